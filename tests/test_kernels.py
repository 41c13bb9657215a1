"""tensornn.kernels against explicit definitions (einsum, Kronecker products, dense tensors)."""
from __future__ import annotations

import itertools
import math
import string

import pytest
import torch
from hypothesis import given, strategies as st

from conftest import DTYPES, TOL, randn
from tensornn import validation as Val
from tensornn import kernels as K
from tensornn.testing import assert_close

pytestmark = [pytest.mark.usefixtures("single_thread")]

L = string.ascii_letters
SHAPES = [(3, 4, 5), (2, 3, 4, 5), (2, 3, 2, 3, 2), (6, 5, 2, 3), (5, 1, 4)]


def _letters(d, offset=0):
    return L[offset:offset + d]


# ---------------------------------------------------------------- unfold / fold
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (3, 4)] + SHAPES)
def test_unfold_fold_round_trip(shape, dtype, gen):
    T = randn(*shape, gen=gen, dtype=dtype)
    for mode in range(len(shape)):
        M = K.unfold(T, mode)
        assert M.shape == (shape[mode], math.prod(shape) // shape[mode])
        assert M.dtype == dtype
        assert_close(K.fold(M, mode, shape), T, rtol=0, atol=0)
        # negative modes mean the same as in Python indexing
        assert_close(K.unfold(T, mode - len(shape)), M, rtol=0, atol=0)


def test_unfold_is_row_major(gen):
    "Column index of unfold(T, n) runs over the remaining modes in C order (last mode fastest)."
    T = torch.arange(24, dtype=torch.float64).reshape(2, 3, 4)
    M = K.unfold(T, 1)
    for i, j, k in itertools.product(range(2), range(3), range(4)):
        assert M[j, i * 4 + k] == T[i, j, k]
    M = K.unfold(T, 2)
    for i, j, k in itertools.product(range(2), range(3), range(4)):
        assert M[k, i * 3 + j] == T[i, j, k]


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=5), data=st.data())
def test_unfold_fold_property(shape, data):
    T = torch.arange(math.prod(shape), dtype=torch.float64).reshape(shape)
    mode = data.draw(st.integers(0, len(shape) - 1))
    M = K.unfold(T, mode)
    # row i of the unfolding holds exactly the slice T[..., i, ...]
    for i in range(shape[mode]):
        assert_close(M[i], T.select(mode, i).reshape(-1), rtol=0, atol=0)
    assert_close(K.fold(M, mode, shape), T, rtol=0, atol=0)


# ---------------------------------------------------------------- mode products
def _mode_dot_einsum(T, M, mode, transpose=False):
    d = T.ndim
    t = _letters(d)
    if M.ndim == 1:
        return torch.einsum(f"{t},{t[mode]}->{t[:mode] + t[mode + 1:]}", T, M)
    out = t[:mode] + "Z" + t[mode + 1:]
    m = f"{t[mode]}Z" if transpose else f"Z{t[mode]}"
    return torch.einsum(f"{t},{m}->{out}", T, M)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_mode_dot_matches_einsum(shape, dtype, gen):
    T = randn(*shape, gen=gen, dtype=dtype)
    for mode in range(len(shape)):
        M = randn(3, shape[mode], gen=gen, dtype=dtype)
        assert_close(K.mode_dot(T, M, mode), _mode_dot_einsum(T, M, mode), **TOL[dtype])
        assert_close(K.mode_dot(T, M.T, mode, transpose=True), _mode_dot_einsum(T, M, mode), **TOL[dtype])
        v = randn(shape[mode], gen=gen, dtype=dtype)
        assert_close(K.mode_dot(T, v, mode), _mode_dot_einsum(T, v, mode), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_mode_dot_equals_unfolded_product(dtype, gen):
    "T x_n M has mode-n unfolding M @ unfold(T, n)."
    shape = (3, 4, 5, 2)
    T = randn(*shape, gen=gen, dtype=dtype)
    for mode in range(4):
        M = randn(6, shape[mode], gen=gen, dtype=dtype)
        assert_close(K.unfold(K.mode_dot(T, M, mode), mode), M @ K.unfold(T, mode), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_mode_dot(dtype, gen):
    shape = (3, 4, 5)
    T = randn(*shape, gen=gen, dtype=dtype)
    Ms = [randn(2 + k, n, gen=gen, dtype=dtype) for k, n in enumerate(shape)]
    expected = torch.einsum("ijk,ai,bj,ck->abc", T, *Ms)
    assert_close(K.multi_mode_dot(T, Ms), expected, **TOL[dtype])
    # transpose, explicit modes in another order, skip
    assert_close(K.multi_mode_dot(T, [M.T for M in Ms], transpose=True), expected, **TOL[dtype])
    assert_close(K.multi_mode_dot(T, Ms[::-1], modes=[2, 1, 0]), expected, **TOL[dtype])
    assert_close(K.multi_mode_dot(T, Ms, skip=1), torch.einsum("ijk,ai,ck->ajc", T, Ms[0], Ms[2]), **TOL[dtype])
    # vectors contract whole modes away
    vs = [randn(n, gen=gen, dtype=dtype) for n in shape]
    assert_close(K.multi_mode_dot(T, vs), torch.einsum("ijk,i,j,k->", T, *vs), **TOL[dtype])
    assert_close(K.multi_mode_dot(T, vs, skip=1), torch.einsum("ijk,i,k->j", T, vs[0], vs[2]), **TOL[dtype])
    # a mix of matrices and vectors
    assert_close(K.multi_mode_dot(T, [Ms[0], vs[1], Ms[2]]), torch.einsum("ijk,ai,j,ck->ac", T, Ms[0], vs[1], Ms[2]),
                 **TOL[dtype])


# ---------------------------------------------------------------- Khatri-Rao
def _khatri_rao_kron(mats):
    R = mats[0].shape[1]
    cols = []
    for r in range(R):
        c = mats[0][:, r]
        for M in mats[1:]:
            c = torch.kron(c, M[:, r])
        cols.append(c)
    return torch.stack(cols, dim=1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", [(3,), (3, 4), (2, 3, 4), (2, 3, 2, 3)])
def test_khatri_rao_matches_kronecker_columns(sizes, dtype, gen):
    R = 5
    mats = [randn(n, R, gen=gen, dtype=dtype) for n in sizes]
    assert_close(K.khatri_rao(mats), _khatri_rao_kron(mats), **TOL[dtype])
    for skip in range(len(sizes)):
        rest = [M for k, M in enumerate(mats) if k != skip]
        if rest:
            assert_close(K.khatri_rao(mats, skip=skip), _khatri_rao_kron(rest), **TOL[dtype])


def test_khatri_rao_batched(gen):
    mats = [randn(4, n, 3, gen=gen) for n in (2, 3, 4)]
    out = K.khatri_rao(mats)
    assert out.shape == (4, 24, 3)
    for b in range(4):
        assert_close(out[b], _khatri_rao_kron([M[b] for M in mats]), **TOL[torch.float64])


# ---------------------------------------------------------------- MTTKRP
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_mttkrp_matches_unfold_times_khatri_rao(shape, dtype, gen):
    R = 4
    T = randn(*shape, gen=gen, dtype=dtype)
    factors = [randn(n, R, gen=gen, dtype=dtype) for n in shape]
    for mode in range(len(shape)):
        expected = K.unfold(T, mode) @ _khatri_rao_kron([A for k, A in enumerate(factors) if k != mode])
        got = K.mttkrp(T, factors, mode)
        assert got.shape == (shape[mode], R)
        assert_close(got, expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_mttkrp_matches_einsum(dtype, gen):
    shape, R = (3, 4, 5, 2), 3
    T = randn(*shape, gen=gen, dtype=dtype)
    F = [randn(n, R, gen=gen, dtype=dtype) for n in shape]
    specs = ["ijkl,jr,kr,lr->ir", "ijkl,ir,kr,lr->jr", "ijkl,ir,jr,lr->kr", "ijkl,ir,jr,kr->lr"]
    for mode, spec in enumerate(specs):
        assert_close(K.mttkrp(T, F, mode), torch.einsum(spec, T, *[A for k, A in enumerate(F) if k != mode]),
                     **TOL[dtype])


@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=5), R=st.integers(1, 4), data=st.data())
def test_mttkrp_property(shape, R, data):
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    T = torch.randn(shape, generator=g, dtype=torch.float64)
    F = [torch.randn(n, R, generator=g, dtype=torch.float64) for n in shape]
    mode = data.draw(st.integers(0, len(shape) - 1))
    expected = K.unfold(T, mode) @ K.khatri_rao(F, skip=mode)
    assert_close(K.mttkrp(T, F, mode), expected, **TOL[torch.float64])


def test_mttkrp_ignores_the_skipped_factor(gen):
    "The factor at `mode` is not used, so its shape may differ (ALS passes the old one)."
    T = randn(3, 4, 5, gen=gen)
    F = [randn(n, 2, gen=gen) for n in (3, 4, 5)]
    G = list(F)
    G[1] = randn(7, 2, gen=gen)
    assert_close(K.mttkrp(T, G, 1), K.mttkrp(T, F, 1), rtol=0, atol=0)


# ---------------------------------------------------------------- dense builders
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4,), (3, 4)] + SHAPES[:3])
def test_cp_full_matches_einsum(shape, dtype, gen):
    R = 3
    w = randn(R, gen=gen, dtype=dtype)
    F = [randn(n, R, gen=gen, dtype=dtype) for n in shape]
    t = _letters(len(shape))
    expected = torch.einsum("r," + ",".join(f"{c}r" for c in t) + "->" + t, w, *F)
    assert_close(K.cp_full(w, F), expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES[:3])
def test_tucker_full_matches_einsum(shape, dtype, gen):
    ranks = [max(1, n - 1) for n in shape]
    core = randn(*ranks, gen=gen, dtype=dtype)
    F = [randn(n, r, gen=gen, dtype=dtype) for n, r in zip(shape, ranks)]
    d = len(shape)
    t, c = _letters(d), _letters(d, 26)
    expected = torch.einsum(c + "," + ",".join(f"{a}{b}" for a, b in zip(t, c)) + "->" + t, core, *F)
    assert_close(K.tucker_full(core, F), expected, **TOL[dtype])


def _random_tt(shape, ranks, gen, dtype=torch.float64):
    r = [1] + list(ranks) + [1]
    return [randn(r[k], n, r[k + 1], gen=gen, dtype=dtype) for k, n in enumerate(shape)]


def _tt_einsum(cores):
    d = len(cores)
    t, c = _letters(d), _letters(d + 1, 26)
    spec = ",".join(f"{c[k]}{t[k]}{c[k + 1]}" for k in range(d)) + "->" + t
    return torch.einsum(spec, *cores)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,ranks", [((5,), ()), ((3, 4), (2,)), ((3, 4, 5), (2, 3)), ((2, 3, 4, 3), (2, 4, 2)),
                                         ((2, 2, 2, 2, 2), (2, 3, 3, 2))])
def test_tt_full_matches_einsum(shape, ranks, dtype, gen):
    cores = _random_tt(shape, ranks, gen, dtype)
    assert_close(K.tt_full(cores), _tt_einsum(cores), **TOL[dtype])


# ---- hierarchical Tucker
def test_ht_tree_structure():
    assert K.ht_tree(1) == {}
    assert K.ht_tree(2) == {(0, 2): ((0, 1), (1, 2))}
    assert K.ht_tree(3) == {(0, 2): ((0, 1), (1, 2)), (0, 3): ((0, 2), (2, 3))}
    t4 = K.ht_tree(4)
    assert t4 == {(0, 2): ((0, 1), (1, 2)), (2, 4): ((2, 3), (3, 4)), (0, 4): ((0, 2), (2, 4))}
    for d in range(2, 9):
        tree = K.ht_tree(d)
        assert len(tree) == d - 1 and (0, d) in tree
        seen = set()
        for (lo, hi), ((a, m), (m2, b)) in tree.items():
            assert a == lo and b == hi and m == m2 == lo + (hi - lo + 1) // 2
            # children come before parents in iteration order
            for child in ((a, m), (m, b)):
                if child[1] - child[0] > 1:
                    assert child in seen
            seen.add((lo, hi))


def _random_ht(shape, rank, gen, dtype=torch.float64):
    d = len(shape)
    tree = K.ht_tree(d)
    r = {(k, k + 1): min(rank, n) for k, n in enumerate(shape)}
    leaves = [randn(n, r[(k, k + 1)], gen=gen, dtype=dtype) for k, n in enumerate(shape)]
    transfers = {}
    for node, (left, right) in tree.items():
        r[node] = 1 if node == (0, d) else rank
        transfers[node] = randn(r[left], r[right], r[node], gen=gen, dtype=dtype)
    return leaves, transfers


def _ht_dense_recursive(leaves, transfers):
    "U_t[i_t, :] for every node by explicit einsum, independently of the library's loop."
    d = len(leaves)
    tree = K.ht_tree(d)

    def U(node):
        lo, hi = node
        if hi - lo == 1:
            return leaves[lo]
        left, right = tree[node]
        Ul, Ur = U(left), U(right)
        return torch.einsum("ia,jb,abt->ijt", Ul, Ur, transfers[node]).reshape(-1, transfers[node].shape[2])

    return U((0, d))[:, 0].reshape([A.shape[0] for A in leaves])


@pytest.mark.parametrize("dtype", DTYPES)
def test_ht_full_matches_explicit_einsum(dtype, gen):
    # d = 3: (0,3) -> (0,2),(2,3); (0,2) -> (0,1),(1,2)
    leaves, tr = _random_ht((3, 4, 5), 2, gen, dtype)
    expected = torch.einsum("ia,jb,abx,kc,xcy->ijk", leaves[0], leaves[1], tr[(0, 2)], leaves[2], tr[(0, 3)])
    assert_close(K.ht_full(leaves, tr), expected, **TOL[dtype])
    # d = 4: (0,4) -> (0,2),(2,4)
    leaves, tr = _random_ht((2, 3, 4, 3), 3, gen, dtype)
    expected = torch.einsum("ia,jb,abx,kc,ld,cdy,xyz->ijkl", *leaves[:2], tr[(0, 2)], *leaves[2:], tr[(2, 4)],
                            tr[(0, 4)])
    assert_close(K.ht_full(leaves, tr), expected, **TOL[dtype])


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4, 3, 2), (2, 2, 2, 2, 2, 2)])
def test_ht_full_matches_recursive_definition(shape, gen):
    leaves, tr = _random_ht(shape, 3, gen)
    assert_close(K.ht_full(leaves, tr), _ht_dense_recursive(leaves, tr), **TOL[torch.float64])


# ---------------------------------------------------------------- inner products
@pytest.mark.parametrize("dtype", DTYPES)
def test_cp_inner_matches_dense(dtype, gen):
    shape = (3, 4, 5)
    wa, wb = randn(3, gen=gen, dtype=dtype), randn(2, gen=gen, dtype=dtype)
    Fa = [randn(n, 3, gen=gen, dtype=dtype) for n in shape]
    Fb = [randn(n, 2, gen=gen, dtype=dtype) for n in shape]
    expected = (K.cp_full(wa, Fa) * K.cp_full(wb, Fb)).sum()
    assert_close(K.cp_inner(wa, Fa, wb, Fb), expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,ranks_a,ranks_b", [((3, 4, 2), (2, 3), (3, 1)), ((3, 4, 2), (5, 7), (6, 4)),
                                                  # ranks 70 x 70 >= 4096: the kernel's other contraction order
                                                  ((70, 2, 70), (70, 70), (70, 70))])
def test_tt_inner_matches_dense(shape, ranks_a, ranks_b, dtype, gen):
    A, B = _random_tt(shape, ranks_a, gen, dtype), _random_tt(shape, ranks_b, gen, dtype)
    expected = (_tt_einsum(A) * _tt_einsum(B)).sum()
    got = K.tt_inner(A, B)
    assert got.shape == ()
    rtol = 1e-3 if dtype == torch.float32 else 1e-9
    assert_close(got, expected, rtol=rtol, atol=rtol * float(_tt_einsum(A).norm() * _tt_einsum(B).norm()))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 4), (3, 4, 5), (2, 3, 2, 3, 2)])
def test_ht_inner_matches_dense(shape, dtype, gen):
    la, ta = _random_ht(shape, 3, gen, dtype)
    lb, tb = _random_ht(shape, 2, gen, dtype)
    expected = (K.ht_full(la, ta) * K.ht_full(lb, tb)).sum()
    got = K.ht_inner(la, ta, lb, tb)
    assert got.shape == ()
    rtol = 1e-4 if dtype == torch.float32 else 1e-10
    assert_close(got, expected, rtol=rtol, atol=rtol * float(K.ht_full(la, ta).norm() * K.ht_full(lb, tb).norm()))


# ---------------------------------------------------------------- entries
def _all_indices(shape):
    return torch.tensor(list(itertools.product(*[range(n) for n in shape])), dtype=torch.long)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cp_entries_match_full(dtype, gen):
    shape = (3, 4, 2, 3)
    w = randn(3, gen=gen, dtype=dtype)
    F = [randn(n, 3, gen=gen, dtype=dtype) for n in shape]
    idx = _all_indices(shape)
    full = K.cp_full(w, F)
    assert_close(K.cp_entries(w, F, idx), full[tuple(idx.T)], **TOL[dtype])
    assert_close(K.cp_entries(w, F, idx.int()), full[tuple(idx.T)], **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_tt_entries_match_full(dtype, gen):
    shape = (3, 4, 2, 3)
    cores = _random_tt(shape, (2, 3, 2), gen, dtype)
    idx = _all_indices(shape)
    full = K.tt_full(cores)
    assert_close(K.tt_entries(cores, idx), full[tuple(idx.T)], **TOL[dtype])
    # a random batch with repeats, and an empty batch
    sub = idx[torch.randint(len(idx), (17,), generator=gen)]
    assert_close(K.tt_entries(cores, sub), full[tuple(sub.T)], **TOL[dtype])
    assert K.tt_entries(cores, idx[:0]).shape == (0,)


# ---------------------------------------------------------------- contraction with vectors
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,ranks", [((3, 4, 5), (2, 3)), ((2, 2, 2, 2), (2, 4, 2)), ((5, 2, 6), (5, 6))])
def test_tt_contract_vectors_matches_dense(shape, ranks, dtype, gen):
    "Covers both contraction orders (rank below and above the mode size)."
    cores = _random_tt(shape, ranks, gen, dtype)
    B = 7
    vecs = [randn(B, n, gen=gen, dtype=dtype) for n in shape]
    full = _tt_einsum(cores)
    t = _letters(len(shape))
    expected = torch.einsum(t + "," + ",".join("Z" + c for c in t) + "->Z", full, *vecs)
    got = K.tt_contract_vectors(cores, vecs)
    assert got.shape == (B,)
    assert_close(got, expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 4), (3, 4, 5), (2, 3, 2, 3, 2)])
def test_ht_contract_vectors_matches_dense(shape, dtype, gen):
    leaves, tr = _random_ht(shape, 3, gen, dtype)
    B = 6
    vecs = [randn(B, n, gen=gen, dtype=dtype) for n in shape]
    t = _letters(len(shape))
    expected = torch.einsum(t + "," + ",".join("Z" + c for c in t) + "->Z", K.ht_full(leaves, tr), *vecs)
    assert_close(K.ht_contract_vectors(leaves, tr, vecs), expected, **TOL[dtype])


def test_contract_vectors_with_unit_vectors_gives_entries(gen):
    shape = (3, 4, 5)
    cores = _random_tt(shape, (2, 3), gen)
    idx = _all_indices(shape)
    vecs = [torch.nn.functional.one_hot(idx[:, k], n).double() for k, n in enumerate(shape)]
    assert_close(K.tt_contract_vectors(cores, vecs), K.tt_entries(cores, idx), **TOL[torch.float64])


# ---------------------------------------------------------------- property tests on formats' kernels
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=5), r=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_tt_kernels_agree_property(shape, r, seed):
    g = torch.Generator().manual_seed(seed)
    cores = _random_tt(shape, [r] * (len(shape) - 1), g)
    full = K.tt_full(cores)
    assert_close(full, _tt_einsum(cores), **TOL[torch.float64])
    assert_close(K.tt_inner(cores, cores), (full * full).sum(), rtol=1e-9, atol=1e-12)
    idx = _all_indices(shape)
    assert_close(K.tt_entries(cores, idx), full.reshape(-1), **TOL[torch.float64])


@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=5), r=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_ht_kernels_agree_property(shape, r, seed):
    g = torch.Generator().manual_seed(seed)
    leaves, tr = _random_ht(shape, r, g)
    full = K.ht_full(leaves, tr)
    assert_close(full, _ht_dense_recursive(leaves, tr), **TOL[torch.float64])
    assert_close(K.ht_inner(leaves, tr, leaves, tr), (full * full).sum(), rtol=1e-9, atol=1e-12)


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=5), R=st.integers(1, 4), seed=st.integers(0, 10**6))
def test_cp_kernels_agree_property(shape, R, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(R, generator=g, dtype=torch.float64)
    F = [torch.randn(n, R, generator=g, dtype=torch.float64) for n in shape]
    full = K.cp_full(w, F)
    assert full.shape == tuple(shape)
    assert_close(K.cp_inner(w, F, w, F), (full * full).sum(), rtol=1e-9, atol=1e-12)
    idx = _all_indices(shape)
    assert_close(K.cp_entries(w, F, idx), full.reshape(-1), **TOL[torch.float64])


# ---------------------------------------------------------------- autograd
def test_kernels_are_differentiable(gen):
    T = randn(3, 4, 2, gen=gen).requires_grad_()
    F = [randn(n, 2, gen=gen).requires_grad_() for n in (3, 4, 2)]
    assert torch.autograd.gradcheck(lambda T, a, b, c: K.mttkrp(T, [a, b, c], 1), (T, *F))
    cores = [c.requires_grad_() for c in _random_tt((2, 3, 2), (2, 2), gen)]
    assert torch.autograd.gradcheck(lambda *c: K.tt_inner(list(c), list(c)), tuple(cores))
    leaves, tr = _random_ht((2, 3, 2), 2, gen)
    leaves = [u.requires_grad_() for u in leaves]
    assert torch.autograd.gradcheck(lambda *u: K.ht_full(list(u), tr), tuple(leaves))


# ---------------------------------------------------------------- helpers
def test_check_rank():
    assert Val.check_rank(3) == 3
    assert Val.check_rank((1, 2, 3), length=3) == (1, 2, 3)
    assert Val.check_rank([2, 2]) == (2, 2)


def test_check_choice():
    assert Val.check_choice("a", {"a": 1, "b": 2}, "init") == 1
    with pytest.raises(ValueError, match=r"init.*\['a', 'b'\].*'c'"):
        Val.check_choice("c", {"a": 1, "b": 2}, "init")


def test_make_generator_and_random_normal_are_reproducible():
    a = K.random_normal((3, 4), generator=K.make_generator(seed=5), dtype=torch.float64)
    b = K.random_normal((3, 4), generator=K.make_generator(seed=5), dtype=torch.float64)
    assert_close(a, b, rtol=0, atol=0)
    assert a.dtype == torch.float64
    assert K.random_normal((2,), generator=K.make_generator(seed=1), dtype=torch.float32).dtype == torch.float32
    g = torch.Generator()
    assert K.make_generator(generator=g) is g
    # no global RNG state is touched
    state = torch.random.get_rng_state()
    K.random_normal((5,), generator=K.make_generator(seed=3))
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_outputs_keep_dtype(dtype, gen):
    T = randn(3, 4, 5, gen=gen, dtype=dtype)
    F = [randn(n, 2, gen=gen, dtype=dtype) for n in (3, 4, 5)]
    w = randn(2, gen=gen, dtype=dtype)
    cores = _random_tt((3, 4, 5), (2, 2), gen, dtype)
    leaves, tr = _random_ht((3, 4, 5), 2, gen, dtype)
    outs = [K.unfold(T, 1), K.mode_dot(T, F[0].T, 0), K.khatri_rao(F), K.mttkrp(T, F, 2), K.cp_full(w, F),
            K.cp_inner(w, F, w, F), K.tucker_full(T[:2, :2, :2], F), K.tt_full(cores), K.tt_inner(cores, cores),
            K.ht_full(leaves, tr), K.ht_inner(leaves, tr, leaves, tr),
            K.tt_entries(cores, torch.zeros(2, 3, dtype=torch.long)),
            K.cp_entries(w, F, torch.zeros(2, 3, dtype=torch.long))]
    for out in outs:
        assert out.dtype == dtype


# ---------------------------------------------------------------- tensornn.testing.assert_close
def test_assert_close_checks_shape_dtype_device_and_values():
    x = torch.tensor([1.0, 2.0, 3.0])
    assert_close(x, x.clone())
    assert_close(x, x + 1e-7)                                          # default float32 tolerances
    with pytest.raises(AssertionError):
        assert_close(x.reshape(3, 1), x)                               # (3, 1) vs (3,): fastcore would pass this
    with pytest.raises(AssertionError):
        assert_close(x, x.double())
    with pytest.raises(AssertionError):
        assert_close(x, x.to("meta"))
    with pytest.raises(AssertionError):
        assert_close(x, x + 1e-3)
    with pytest.raises(AssertionError, match="my message"):
        assert_close(x, x + 1, msg="my message")


def test_assert_close_tolerances():
    x = torch.tensor([100.0, 200.0], dtype=torch.float64)
    assert_close(x, x * (1 + 1e-6), rtol=1e-5, atol=0)
    with pytest.raises(AssertionError):
        assert_close(x, x * (1 + 1e-4), rtol=1e-5, atol=0)
    # only one tolerance given: the other is zero (torch.testing itself refuses a single one)
    assert_close(x, x * (1 + 1e-6), rtol=1e-5)
    with pytest.raises(AssertionError):
        assert_close(x, x + 1e-3, rtol=1e-9)
    assert_close(x, x + 1e-3, atol=1e-2)
    with pytest.raises(AssertionError):
        assert_close(x, x + 1e-1, atol=1e-2)


@pytest.mark.parametrize("shape", [(150, 30, 1000), (30, 40, 5, 1000), (12, 200, 2200)])   # > 4M entries: 2 slabs
def test_mttkrp_middle_modes_in_slabs_match_the_unfolding(shape):
    "Middle modes run in slabs of the leading modes (several slabs here); the result and its gradient are unchanged."
    g = torch.Generator().manual_seed(9)
    T = torch.randn(shape, generator=g, dtype=torch.float64)
    F = [torch.randn(n, 6, generator=g, dtype=torch.float64, requires_grad=True) for n in shape]
    for mode in range(1, len(shape) - 1):
        ref = K.unfold(T, mode) @ K.khatri_rao(F, skip=mode)
        out = K.mttkrp(T, F, mode)
        assert_close(out, ref)
        gr = torch.autograd.grad(ref.square().sum(), F[0])[0]
        go = torch.autograd.grad(out.square().sum(), F[0])[0]
        assert_close(go, gr)


# ---------------------------------------------------------------- gemm: the oneDNN route for large float32 CPU products
def _layouts(A):
    "The same matrix stored contiguously, transposed (column-major) and as a strided slice of a larger one."
    wide = torch.zeros(A.shape[0], 3 * A.shape[1], dtype=A.dtype)
    wide[:, ::3] = A
    return {"contiguous": A.contiguous(), "transposed": A.mT.contiguous().mT, "strided": wide[:, ::3]}


@pytest.mark.parametrize("m, k, n", [(300, 4000, 10), (4000, 300, 16), (200, 200, 200), (16, 50000, 12)])
def test_gemm_matches_the_float64_product_in_every_layout(m, k, n):
    g = torch.Generator().manual_seed(m + n)
    A, B = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    ref = A.double() @ B.double()
    for (la, A_), (lb, B_) in itertools.product(_layouts(A).items(), _layouts(B).items()):
        out = K.gemm(A_, B_)
        assert out.shape == (m, n) and out.dtype == torch.float32, (la, lb)
        assert float((out.double() - ref).norm() / ref.norm()) < 1e-5, (la, lb)


def test_gemm_routes():
    "oneDNN only for large float32 CPU products with nothing tracing (autograd through _OneDNNLinear); else torch.matmul."
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(256, 256, generator=g), torch.randn(256, 64, generator=g)
    available = K._onednn_linear() is not None
    assert K._wants_onednn(A, B) == available
    assert not K._wants_onednn(A.double(), B.double())
    assert not K._wants_onednn(A[:8], B[:, :8])                                  # too small to pay oneDNN's fixed cost
    Ag = A.clone().requires_grad_()
    assert K._wants_onednn(Ag, B) == available                                   # a gradient to record: still oneDNN
    out = K.gemm(Ag, B)
    assert (type(out.grad_fn).__name__ == "_OneDNNLinearBackward") == available
    with torch.no_grad():
        assert K.gemm(Ag, B).grad_fn is None
    seen = []
    torch.func.vmap(lambda a: seen.append(K._wants_onednn(a, B)) or K.gemm(a, B))(A[None])
    assert seen == [False]                                                       # traced: the autograd/vmap-aware route


def test_gemm_gradient_through_the_autograd_route():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(300, 400, generator=g, requires_grad=True)
    B = torch.randn(400, 50, generator=g, requires_grad=True)
    K.gemm(A, B).square().sum().backward()
    C = (A @ B).detach()
    assert_close(A.grad, 2 * C @ B.detach().mT, rtol=1e-4, atol=1e-3)
    assert_close(B.grad, 2 * A.detach().mT @ C, rtol=1e-4, atol=1e-3)


def test_onednn_gets_only_plain_layouts(monkeypatch):
    "oneDNN is handed a row-major left operand and a row-major or transposed right one, never a broadcast (stride-0) one."
    if K._onednn_linear() is None: pytest.skip("no oneDNN route in this build")
    real, seen = K._onednn_linear(), []
    monkeypatch.setattr(K, "_onednn_linear", lambda: lambda x, w: seen.append((x, w)) or real(x, w))
    g = torch.Generator().manual_seed(3)
    W, x = torch.randn(1024, 512, generator=g), torch.randn(64, 1024, generator=g)
    grad = torch.ones(()).expand(64, 512)                                      # the gradient of y.sum()
    for A, B in [(grad, W.mT), (x.mT, grad), (W, grad.mT), (x, W)]:
        assert_close(K._gemm(A, B), A.contiguous() @ B.contiguous(), rtol=1e-5, atol=1e-3)
    assert seen and all(xx.is_contiguous() and (w.is_contiguous() or w.mT.is_contiguous()) for xx, w in seen)


@pytest.mark.parametrize("layout", ["rows", "A transposed", "both transposed", "B transposed"])
def test_gemm_gradients_on_the_onednn_route_match_float64(layout):
    "Every layout _onednn_product handles, forward and both gradients, against float64 (only A or only B recorded too)."
    g = torch.Generator().manual_seed(2)
    A0, B0, dC = torch.randn(200, 300, generator=g), torch.randn(300, 120, generator=g), torch.randn(200, 120, generator=g)
    lay = {"rows": (lambda M: M, lambda M: M), "A transposed": (lambda M: M.mT.contiguous().mT, lambda M: M),
           "both transposed": (lambda M: M.mT.contiguous().mT, lambda M: M.mT.contiguous().mT),
           "B transposed": (lambda M: M, lambda M: M.mT.contiguous().mT)}[layout]
    for need in [(True, True), (True, False), (False, True)]:
        A, B = A0.clone().requires_grad_(need[0]), B0.clone().requires_grad_(need[1])
        out = K.gemm(lay[0](A), lay[1](B))
        assert_close(out.double(), A0.double() @ B0.double(), rtol=1e-5, atol=1e-4)
        out.mul_(2.0)                                         # in place, like any product's result (a view or not)
        out.backward(dC / 2)
        if need[0]: assert_close(A.grad.double(), dC.double() @ B0.double().mT, rtol=1e-5, atol=1e-3)
        else: assert A.grad is None
        if need[1]: assert_close(B.grad.double(), A0.double().mT @ dC.double(), rtol=1e-5, atol=1e-3)
        else: assert B.grad is None


def test_gemm_can_be_switched_off_by_the_environment():
    import os, subprocess, sys
    code = "import tensornn.kernels as K; print(K._onednn_linear() is None)"
    env = dict(os.environ, TENSORNN_CPU_GEMM="blas")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize("shape", [(60, 70, 300), (300, 70, 60), (20, 30, 40, 50), (4, 500, 1000)])
def test_float32_mttkrp_and_mode_dot_on_the_gemm_route_match_float64(shape):
    "Large float32 products take oneDNN (where available) in every MTTKRP branch; they agree with float64 to rounding."
    g = torch.Generator().manual_seed(len(shape))
    T = torch.randn(shape, generator=g)
    F = [torch.randn(n, 12, generator=g) for n in shape]
    for mode in range(len(shape)):
        ref = K.mttkrp(T.double(), [A.double() for A in F], mode)
        assert float((K.mttkrp(T, F, mode).double() - ref).norm() / ref.norm()) < 1e-5
        M = torch.randn(9, shape[mode], generator=g)
        ref = K.mode_dot(T.double(), M.double(), mode)
        assert float((K.mode_dot(T, M, mode).double() - ref).norm() / ref.norm()) < 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("route,shape", [("first", (4, 3, 9)), ("first", (5, 2, 3, 8)), ("first", (3, 1, 12)),
                                         ("first", (6, 7, 2, 2, 5)), ("last", (9, 3, 4)), ("last", (8, 2, 3, 5)),
                                         ("last", (12, 1, 3)), ("last", (8, 7, 2, 2, 5))])
def test_mttkrp_by_reduction_matches_the_unfolding(route, shape, dtype, gen):
    """The CUDA route for mode 0 (GEMM with the last factor, then a reduction) and the CPU route for the last mode
    (GEMM with the first factor, then batched products), against the definition; mttkrp takes the last one on the CPU."""
    T = torch.randn(*shape, generator=gen, dtype=dtype)
    F = [torch.randn(n, 2, generator=gen, dtype=dtype) for n in shape]
    mode = 0 if route == "first" else len(shape) - 1
    ref = K.unfold(T, mode) @ K.khatri_rao(F, skip=mode)
    out = K._mttkrp_first_by_reduction(T, F[1:]) if route == "first" else K._mttkrp_last_by_reduction(T, F[:-1])
    assert out.shape == (shape[mode], 2) and out.dtype == dtype
    assert_close(out, ref, **TOL[dtype])
    Tp = T.movedim(0, -1).contiguous().movedim(-1, 0)                              # a non-contiguous view of T
    for X in (T, Tp): assert_close(K.mttkrp(X, F, mode), ref, **TOL[dtype])       # (4R <= I_0 for "last")
