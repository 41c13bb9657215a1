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
    return Fmt.random_cp(shape, R, generator=g, dtype=dtype)


def make_tucker(shape, ranks, g, dtype=torch.float64):
    return Fmt.random_tucker(shape, tuple(ranks), generator=g, dtype=dtype)


def make_tt(shape, ranks, g, dtype=torch.float64):
    return Fmt.random_tt(shape, 1 if len(shape) == 1 else tuple(ranks), generator=g, dtype=dtype)


def make_ht(shape, rank, g, dtype=torch.float64):
    return Fmt.random_ht(shape, rank, generator=g, dtype=dtype)


def make_tr(shape, ranks, g, dtype=torch.float64):
    return Fmt.random_tr(shape, ranks, generator=g, dtype=dtype)


def all_formats(shape, g, dtype=torch.float64):
    d = len(shape)
    return {
        "cp": make_cp(shape, 3, g, dtype),
        "tucker": make_tucker(shape, [min(2, n) for n in shape], g, dtype),
        "tt": make_tt(shape, [2] * (d - 1), g, dtype),
        "ht": make_ht(shape, 2, g, dtype),
        "tr": make_tr(shape, [2 + k % 2 for k in range(d)], g, dtype),
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


# ---------------------------------------------------------------- one interface, TensorLy interop
INTERFACE = ["shape", "ndim", "dtype", "device", "rank", "full", "entries", "n_params", "compression", "norm",
             "inner", "to", "to_tensorly", "_inner_dense", "_inner_same"]


def test_every_format_implements_the_interface(gen):
    "Each member of the interface is declared on _Format and answered by every format (no isinstance ladder)."
    fmts = all_formats(SHAPE, gen)
    for name in INTERFACE:
        assert hasattr(Fmt._Format, name), name
    for key, x in fmts.items():
        if key == "dense": continue
        assert isinstance(x.n_params, int) and x.n_params == sum(t.numel() for t in x._tensors())
        assert_close(x.inner(fmts["dense"]), (x.full() * fmts["dense"]).sum(), **TOL[torch.float64])
        for name in ("full", "entries", "_inner_dense", "_inner_same"):
            assert getattr(type(x), name) is not getattr(Fmt._Format, name), (key, name)


def test_rank_has_one_meaning_per_format(gen):
    assert Fmt.random_cp((3, 4, 5), 2, generator=gen, dtype=torch.float64).rank == 2
    assert Fmt.random_tucker((3, 4, 5), (2, 3, 1), generator=gen, dtype=torch.float64).rank == (2, 3, 1)
    assert Fmt.random_tt((3, 4, 5), (2, 3), generator=gen, dtype=torch.float64).rank == (1, 2, 3, 1)
    h = Fmt.random_ht((3, 4, 5, 6), 2, generator=gen, dtype=torch.float64)
    assert set(h.rank) == {(0, 1), (1, 2), (2, 3), (3, 4), (0, 2), (2, 4), (0, 4)} and h.rank[(0, 4)] == 1


def test_formats_unpack_like_tensorly(tl_torch, gen):
    tl = tl_torch
    cp, tk, tt = (Fmt.random_cp(SHAPE, 2, generator=gen, dtype=torch.float64), Fmt.random_tucker(SHAPE, 2, generator=gen, dtype=torch.float64),
                  Fmt.random_tt(SHAPE, 2, generator=gen, dtype=torch.float64))
    weights, factors = cp
    assert weights is cp.weights and factors is cp.factors
    core, factors = tk
    assert core is tk.core
    assert len(tt) == 3 and tt[0] is tt.cores[0]
    assert_close(tl.cp_to_tensor(cp), cp.full(), **TOL[torch.float64])            # failed on main: not iterable
    assert_close(tl.tucker_to_tensor(tk), tk.full(), **TOL[torch.float64])
    assert_close(tl.tt_to_tensor(tt), tt.full(), **TOL[torch.float64])


def test_tensorly_round_trip_both_ways(tl_torch, gen):
    tl = tl_torch
    for x in (Fmt.random_cp(SHAPE, 2, generator=gen, dtype=torch.float64), Fmt.random_tucker(SHAPE, (2, 3, 2), generator=gen, dtype=torch.float64),
              Fmt.random_tt(SHAPE, (2, 3), generator=gen, dtype=torch.float64)):
        y = x.to_tensorly()
        assert type(y).__module__.startswith("tensorly")
        to_tensor = {Fmt.CPTensor: tl.cp_to_tensor, Fmt.TuckerTensor: tl.tucker_to_tensor, Fmt.TTTensor: tl.tt_to_tensor}
        assert_close(to_tensor[type(x)](y), x.full(), **TOL[torch.float64])
        z = Fmt.from_tensorly(y)
        assert type(z) is type(x) and z.rank == x.rank
        assert_close(z.full(), x.full(), rtol=0, atol=0)
    # TensorLy's own decompositions come back as formats
    from tensorly.decomposition import parafac, tensor_train, tucker
    T = Fmt.random_cp(SHAPE, 2, generator=gen, dtype=torch.float64).full()
    assert_close(Fmt.from_tensorly(parafac(T, 2, init="svd", n_iter_max=200, tol=0)).full(), T, rtol=1e-6, atol=1e-6)
    assert Fmt.from_tensorly(tucker(T, rank=[2, 2, 2])).rank == (2, 2, 2)
    assert_close(Fmt.from_tensorly(tensor_train(T, rank=[1, 2, 2, 1])).full(), T, rtol=1e-8, atol=1e-8)


def test_from_tensorly_numpy_backend():
    "NumPy-backed TensorLy objects are converted with the as_tensor rule (float64 stays float64)."
    import numpy as np
    import tensorly as tl
    from tensorly.cp_tensor import CPTensor as TLCP
    rng = np.random.default_rng(0)
    F = [rng.standard_normal((n, 2)) for n in SHAPE]
    with tl.backend_context("numpy"):  # other tests switch TensorLy to its PyTorch backend
        cp = Fmt.from_tensorly(TLCP((np.ones(2), F)))
    assert cp.dtype == torch.float64
    assert_close(cp.full(), torch.from_numpy(np.einsum("ir,jr,kr->ijk", *F)), **TOL[torch.float64])


def test_norm_of_a_tensorly_object_says_how_to_convert(gen):
    "On main: 'expected a torch.Tensor, CPTensor, ... got CPTensor'."
    from tensorly.cp_tensor import CPTensor as TLCP
    cp = Fmt.random_cp(SHAPE, 2, generator=gen, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"^a\b.*TensorLy's CPTensor.*from_tensorly"):
        Fmt.norm(TLCP((cp.weights, cp.factors)))
    with pytest.raises(TypeError, match=r"^x\b"):
        Fmt.from_tensorly(cp)
    with pytest.raises(TypeError, match=r"HTTensor: TensorLy has no such format"):
        Fmt.random_ht(SHAPE, 2, generator=gen, dtype=torch.float64).to_tensorly()


# ---------------------------------------------------------------- tensor rings
@pytest.mark.parametrize("dtype", DTYPES)
def test_ring_agrees_with_its_full_tensor(dtype):
    "Entries, norm, inner products with a ring and a dense tensor, and a cyclic shift of the cores, against the dense tensor."
    g = torch.Generator().manual_seed(11)
    a, b = make_tr((3, 4, 2, 3), (2, 3, 2, 2), g, dtype), make_tr((3, 4, 2, 3), (1, 2, 3, 2), g, dtype)
    A, B = a.full(), b.full()
    assert a.rank == (2, 3, 2, 2, 2) and len(a) == 4 and a[1] is a.cores[1]
    assert_close(Fmt.inner(a, b), (A * B).sum(), **TOL[dtype])
    assert_close(Fmt.inner(a, B), (A * B).sum(), **TOL[dtype])
    assert_close(Fmt.inner(B, a), (A * B).sum(), **TOL[dtype])
    assert_close(Fmt.norm(a), A.norm(), **TOL[dtype])
    idx = torch.stack([torch.randint(0, n, (10,), generator=g) for n in a.shape], 1)
    assert_close(a.entries(idx), A[tuple(idx.T)], **TOL[dtype])
    assert_close(Fmt.TRTensor(a.cores[1:] + a.cores[:1]).full(), A.permute(1, 2, 3, 0), **TOL[dtype])
    assert_close(Fmt.tr_full(a.cores), A, rtol=0, atol=0)


def test_ring_entries_by_brute_force_trace():
    "The definition itself: every entry is the trace of the product of the selected slices."
    a = make_tr((2, 3, 2), (2, 1, 3), torch.Generator().manual_seed(5))
    A = a.full()
    for i, j, k in itertools.product(range(2), range(3), range(2)):
        assert_close(A[i, j, k], torch.trace(a.cores[0][:, i, :] @ a.cores[1][:, j, :] @ a.cores[2][:, k, :]))


def test_a_tensor_train_is_a_ring_with_r0_one(gen):
    tt = make_tt((3, 4, 5, 2), (2, 3, 2), gen)
    ring = Fmt.TRTensor(tt.cores)
    assert ring.rank == (1, 2, 3, 2, 1)
    assert_close(ring.full(), tt.full(), rtol=0, atol=0)
    other = make_tr((3, 4, 5, 2), 3, gen)
    assert_close(Fmt.inner(tt, other), (tt.full() * other.full()).sum(), **TOL[torch.float64])


def test_ring_inner_never_forms_the_dense_ring(gen, monkeypatch):
    "inner and norm of rings (and of a ring with TT, CP, Tucker, dense) do not call tr_full or TRTensor.full."
    a, b = make_tr((3, 4, 5, 2), (2, 3, 2, 2), gen), make_tr((3, 4, 5, 2), 2, gen)
    others = [b, make_tt((3, 4, 5, 2), (2, 2, 2), gen), make_cp((3, 4, 5, 2), 2, gen), make_tucker((3, 4, 5, 2), (2, 2, 2, 2), gen),
              torch.randn(3, 4, 5, 2, generator=gen, dtype=torch.float64)]
    expected = [(a.full() * full_of(o)).sum() for o in others] + [a.full().norm()]
    def refuse(*args, **kwargs): raise AssertionError("the dense ring was formed")
    monkeypatch.setattr(Fmt.TRTensor, "full", refuse)
    monkeypatch.setattr(Fmt, "tr_full", refuse)
    got = [Fmt.inner(a, o) for o in others] + [Fmt.norm(a)]
    for x, y in zip(got, expected): assert_close(x, y, **TOL[torch.float64])


def test_ring_tensorly_round_trip(tl_torch, gen):
    tl = tl_torch
    ring = make_tr(SHAPE, (2, 3, 1), gen)
    y = ring.to_tensorly()
    assert type(y).__name__ == "TRTensor" and type(y).__module__.startswith("tensorly")
    assert_close(tl.tr_to_tensor(y), ring.full(), **TOL[torch.float64])
    assert_close(tl.tr_to_tensor(ring), ring.full(), **TOL[torch.float64])             # unpacks like TensorLy's
    z = Fmt.from_tensorly(y)
    assert type(z) is Fmt.TRTensor and z.rank == ring.rank == tuple(y.rank)
    from tensorly.random import random_tr as tl_random_tr
    t = tl_random_tr((3, 4, 5), (2, 3, 2, 2), random_state=0)
    assert_close(Fmt.from_tensorly(t).full(), tl.tr_to_tensor(t), **TOL[torch.float64])


def test_ring_validation_and_factory_ranks(gen):
    with pytest.raises(ValueError, match=r"^cores: expected the ring to close, r_d = r_0"):
        Fmt.TRTensor([torch.randn(2, 3, 3), torch.randn(3, 3, 1)])
    with pytest.raises(ValueError, match=r"^cores\[1\]: expected left rank 3"):
        Fmt.TRTensor([torch.randn(2, 3, 3), torch.randn(2, 3, 2)])
    with pytest.raises(TypeError, match=r"^cores\[1\]"):
        Fmt.TRTensor([torch.randn(2, 3, 2), torch.randn(2, 3, 2, dtype=torch.float64)])
    with pytest.raises(TypeError, match=r"^cores"):
        Fmt.TRTensor(torch.randn(2, 3, 2))
    with pytest.raises(TypeError, match=r"^cores\[0\]: expected a real"):
        Fmt.TRTensor([torch.randn(2, 3, 2, dtype=torch.complex64)])
    ring = make_tr((2, 3), (2, 2), gen)
    with pytest.raises(TypeError, match=r"^b"):
        Fmt.inner(ring, ring.to(torch.float32))
    with pytest.raises(ValueError, match=r"^b"):
        Fmt.inner(ring, ring.full().to("meta"))
    with pytest.raises(ValueError, match=r"^b: expected shape"):
        Fmt.inner(ring, torch.randn(3, 2, dtype=torch.float64))
    assert Fmt.random_tr((3, 4), 2, seed=0).rank == (2, 2, 2)
    assert Fmt.random_tr((3, 4), (2, 3, 2), seed=0).rank == (2, 3, 2)
    assert Fmt.random_tr((3, 4, 5), 2, seed=0, dtype=torch.float64).dtype == torch.float64
    assert_close(Fmt.random_tr((3, 4), 2, seed=7).full(), Fmt.random_tr((3, 4), 2, generator=torch.Generator().manual_seed(7)).full())
