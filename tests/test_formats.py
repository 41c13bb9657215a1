"""Formats agree with their full tensors: norm, inner products (every pair), entries, dtype conversion."""
from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, strategies as st

from conftest import DTYPES, TOL
from tensornn import kernels as K
from tensornn import formats as Fmt
from tensornn.testing import assert_close

pytestmark = [pytest.mark.usefixtures("single_thread")]


SHAPE = (3, 4, 5)


def make_cp(shape, R, g, dtype=torch.float64):
    return Fmt.CPTensor(torch.rand(R, generator=g, dtype=dtype) + 0.5,
                      [torch.randn(n, R, generator=g, dtype=dtype) for n in shape])


def make_tucker(shape, ranks, g, dtype=torch.float64):
    return Fmt.TuckerTensor(torch.randn(*ranks, generator=g, dtype=dtype),
                          [torch.randn(n, r, generator=g, dtype=dtype) for n, r in zip(shape, ranks)])


def make_tt(shape, ranks, g, dtype=torch.float64):
    r = [1] + list(ranks) + [1]
    return Fmt.TTTensor([torch.randn(r[k], n, r[k + 1], generator=g, dtype=dtype) for k, n in enumerate(shape)])


def make_ht(shape, rank, g, dtype=torch.float64):
    d = len(shape)
    r = {(k, k + 1): 1 if d == 1 else min(rank, n) for k, n in enumerate(shape)}   # order 1: a single column
    leaves = [torch.randn(n, r[(k, k + 1)], generator=g, dtype=dtype) for k, n in enumerate(shape)]
    transfers = {}
    for node, (a, b) in K.ht_tree(d).items():
        r[node] = 1 if node == (0, d) else rank
        transfers[node] = torch.randn(r[a], r[b], r[node], generator=g, dtype=dtype)
    return Fmt.HTTensor(leaves, transfers)


def all_formats(shape, g, dtype=torch.float64):
    d = len(shape)
    return {
        "cp": make_cp(shape, 3, g, dtype),
        "tucker": make_tucker(shape, [min(2, n) for n in shape], g, dtype),
        "tt": make_tt(shape, [2] * (d - 1), g, dtype),
        "ht": make_ht(shape, 2, g, dtype),
        "dense": torch.randn(*shape, generator=g, dtype=dtype),
    }


def full_of(x):
    return x if isinstance(x, torch.Tensor) else x.full()


def _all_indices(shape):
    return torch.tensor(list(itertools.product(*[range(n) for n in shape])), dtype=torch.long)


# ---------------------------------------------------------------- attributes
def test_cp_attributes(gen):
    cp = make_cp(SHAPE, 3, gen)
    assert cp.shape == torch.Size(SHAPE) and isinstance(cp.shape, torch.Size)
    assert cp.rank == 3 and cp.ndim == 3
    assert cp.dtype == torch.float64 and cp.device == torch.device("cpu")
    assert_close(cp.full(), K.cp_full(cp.weights, cp.factors), **TOL[torch.float64])
    assert "CPTensor" in repr(cp)


def test_tucker_attributes(gen):
    tk = make_tucker(SHAPE, (2, 3, 2), gen)
    assert tk.shape == torch.Size(SHAPE)
    assert tuple(tk.rank) == (2, 3, 2) and tk.ndim == 3
    assert tk.dtype == torch.float64
    assert_close(tk.full(), K.tucker_full(tk.core, tk.factors), **TOL[torch.float64])
    assert "TuckerTensor" in repr(tk)


def test_tt_attributes(gen):
    tt = make_tt((3, 4, 5, 2), (2, 3, 2), gen)
    assert tt.shape == torch.Size((3, 4, 5, 2))
    assert tuple(tt.rank) == (1, 2, 3, 2, 1) and tt.ndim == 4
    assert_close(tt.full(), K.tt_full(tt.cores), **TOL[torch.float64])
    assert "TTTensor" in repr(tt)


def test_ht_attributes(gen):
    ht = make_ht((3, 4, 5, 2), 2, gen)
    assert ht.shape == torch.Size((3, 4, 5, 2)) and ht.ndim == 4
    rank = ht.rank
    assert isinstance(rank, dict)
    assert rank[(0, 4)] == 1 and rank[(0, 2)] == 2 and rank[(2, 4)] == 2
    assert_close(ht.full(), K.ht_full(ht.leaves, ht.transfers), **TOL[torch.float64])
    assert "HTTensor" in repr(ht)


# ---------------------------------------------------------------- norms, inner products, entries
@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 2, 3)])
def test_norms_match_full(shape, gen):
    for name, x in all_formats(shape, gen).items():
        expected = full_of(x).norm()
        assert_close(Fmt.norm(x), expected, rtol=1e-9, atol=0, msg=f"Fmt.norm({name})")
        if name != "dense":
            assert_close(x.norm(), expected, rtol=1e-9, atol=0, msg=f"{name}.norm()")


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 2, 3)])
def test_inner_products_every_pair(shape, gen):
    fmts = all_formats(shape, gen)
    for (na, a), (nb, b) in itertools.product(fmts.items(), repeat=2):
        expected = (full_of(a) * full_of(b)).sum()
        got = Fmt.inner(a, b)
        scale = float(full_of(a).norm() * full_of(b).norm())
        assert_close(torch.as_tensor(got, dtype=torch.float64), expected, rtol=1e-9, atol=1e-11 * scale,
                     msg=f"inner({na}, {nb})")


@pytest.mark.parametrize("dtype", DTYPES)
def test_entries_match_full(dtype, gen):
    shape = (3, 4, 2, 3)
    idx = _all_indices(shape)
    for name, x in all_formats(shape, gen, dtype).items():
        if name == "dense":
            continue
        got = x.entries(idx)
        assert got.shape == (len(idx),), name
        assert_close(got, x.full()[tuple(idx.T)], **TOL[dtype], msg=name)


@pytest.mark.parametrize("src,dst", [(torch.float64, torch.float32), (torch.float32, torch.float64)])
def test_to_dtype(src, dst, gen):
    for name, x in all_formats(SHAPE, gen, src).items():
        if name == "dense":
            continue
        y = x.to(dst)
        assert type(y) is type(x) and y.dtype == dst and x.dtype == src, name
        assert y.shape == x.shape
        assert_close(y.full(), x.full().to(dst), **TOL[torch.float32], msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_formats_keep_dtype(dtype, gen):
    for name, x in all_formats(SHAPE, gen, dtype).items():
        if name == "dense":
            continue
        assert x.dtype == dtype and x.full().dtype == dtype and x.norm().dtype == dtype, name


def test_to_meta_device(gen):
    "`.to(device)` moves every factor (meta stands in for another device)."
    for name, x in all_formats(SHAPE, gen).items():
        if name == "dense":
            continue
        y = x.to("meta")
        assert y.device.type == "meta" and y.shape == x.shape, name


# ---------------------------------------------------------------- property tests
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4)


@given(shape=shapes, seed=st.integers(0, 10**6))
def test_formats_agree_with_full_property(shape, seed):
    g = torch.Generator().manual_seed(seed)
    fmts = all_formats(shape, g)
    idx = _all_indices(shape)
    fulls = {k: full_of(v) for k, v in fmts.items()}
    for name, x in fmts.items():
        if name == "dense":
            continue
        assert x.shape == torch.Size(shape)
        assert_close(x.norm(), fulls[name].norm(), rtol=1e-9, atol=1e-12)
        assert_close(x.entries(idx), fulls[name].reshape(-1), **TOL[torch.float64])
        for other in fmts:                                                       # every pair of formats
            expected = (fulls[name] * fulls[other]).sum()
            assert_close(torch.as_tensor(Fmt.inner(x, fmts[other])), expected, rtol=1e-9,
                         atol=1e-11 * float(fulls[name].norm() * fulls[other].norm()) + 1e-14)


def test_inner_of_tensor_trains_with_large_ranks(gen):
    "Ranks r_a * r_b >= 4096 take tt_inner's other contraction order; inner() must still equal the dense value."
    a = make_tt((70, 2, 70), (70, 70), gen)
    b = make_tt((70, 2, 70), (64, 64), gen)
    A, B = a.full(), b.full()
    assert_close(Fmt.inner(a, b), (A * B).sum(), rtol=1e-9, atol=1e-9 * float(A.norm() * B.norm()))
    assert_close(Fmt.norm(a), A.norm(), rtol=1e-9, atol=0)
