"""Theory tools of tensornn.decompositions: Jennrich, tensor power method, Kruskal rank, generic rank (Terracini),
multilinear/TT ranks, Paratuck-2 and the t-product/t-SVD, against definitions and published numbers."""
from __future__ import annotations


import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from conftest import rel_err
from tensornn import kernels as K
from tensornn import formats as Fmt
from tensornn import decompositions as D
from tensornn import theory as Th
from tensornn.testing import assert_close

pytestmark = [pytest.mark.usefixtures("single_thread")]

F64 = dict(dtype=torch.float64)


# ---------------------------------------------------------------- Jennrich
@settings(max_examples=20)
@given(I=st.integers(3, 6), J=st.integers(3, 6), Kk=st.integers(2, 6), R=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_jennrich_recovers_exact_cp_property(I, J, Kk, R, seed):
    g = torch.Generator().manual_seed(seed)
    F = [torch.randn(n, R, generator=g, **F64) for n in (I, J, Kk)]
    T = K.cp_full(torch.ones(R, **F64), F)
    cp = Th.jennrich(T, R, seed=seed)
    assert isinstance(cp, Fmt.CPTensor) and cp.rank == R
    assert rel_err(cp.full(), T) < 1e-8
    score, perm = Th.factor_match_score(cp, F)
    assert score > 1 - 1e-8
    assert sorted(perm.tolist()) == list(range(R))


def test_jennrich_bad_input(gen):
    T = torch.randn(3, 4, 5, generator=gen, **F64)
    with pytest.raises(ValueError, match=r"^rank\b"):
        Th.jennrich(T, 4)                               # rank > min(I, J)
    with pytest.raises(ValueError, match=r"^T\b"):
        Th.jennrich(torch.randn(3, 4, 5, 2, generator=gen, **F64), 2)
    with pytest.raises(ValueError, match=r"^T\b"):
        Th.jennrich(torch.randn(3, 4, 1, generator=gen, **F64), 2)


# ---------------------------------------------------------------- tensor power method
def _odeco(n, R, m, g):
    "Orthogonally decomposable symmetric tensor sum_r lam_r v_r^{(x)m} with orthonormal v_r."
    V = torch.linalg.qr(torch.randn(n, R, generator=g, **F64)).Q
    lam = torch.linspace(3.0, 1.0, R, **F64)
    return K.cp_full(lam, [V] * m), lam, V


@pytest.mark.parametrize("n,R,m", [(5, 3, 3), (6, 4, 3), (4, 2, 4)])
def test_symmetric_cp_power_recovers_odeco(n, R, m, gen):
    T, lam, V = _odeco(n, R, m, gen)
    cp, rec = Th.symmetric_cp_power(T, R, seed=0)
    assert cp.ndim == m and cp.rank == R
    for A in cp.factors[1:]:
        assert_close(A, cp.factors[0], rtol=0, atol=0)                 # identical factors
    assert rel_err(cp.full(), T) < 1e-8
    assert rec.errors[-1] < 1e-8 and len(rec.errors) == R
    assert_close(cp.weights.abs().sort(descending=True).values, lam, rtol=1e-8, atol=1e-10)
    score, _ = Th.factor_match_score(cp.factors, [V] * m)
    assert score > 1 - 1e-8


def test_symmetric_cp_power_rejects_non_symmetric(gen):
    with pytest.raises(ValueError, match=r"^T\b"):
        Th.symmetric_cp_power(torch.randn(4, 4, 4, generator=gen, **F64), 2)
    with pytest.raises(ValueError, match=r"^T\b"):
        Th.symmetric_cp_power(torch.randn(4, 4, 5, generator=gen, **F64), 2)


# ---------------------------------------------------------------- Kruskal rank and uniqueness
def test_kruskal_rank_known_matrices(gen):
    e = torch.eye(4, **F64)
    assert Th.kruskal_rank(e) == 4
    assert Th.kruskal_rank(torch.stack([e[0], e[1], e[0] + e[1]], 1)) == 2      # rank 2, every pair independent
    assert Th.kruskal_rank(torch.stack([e[0], e[1], e[2], 2 * e[0]], 1)) == 1   # two parallel columns
    assert Th.kruskal_rank(torch.stack([e[0], e[1], e[0] + e[1], e[2]], 1)) == 2   # rank 3 but k-rank 2
    assert Th.kruskal_rank(torch.randn(3, 7, generator=gen, **F64)) == 3        # generic: min(I, R)
    assert Th.kruskal_rank(torch.randn(6, 4, generator=gen, **F64)) == 4
    nodes = torch.tensor([0.5, 1.0, 1.5, 2.0, 2.5], **F64)                       # Vandermonde, distinct nodes
    assert Th.kruskal_rank(nodes[None, :] ** torch.arange(3, **F64)[:, None]) == 3
    assert Th.kruskal_rank(torch.zeros(3, 2, **F64)) == 0


def test_kruskal_uniqueness(gen):
    F = [torch.randn(4, 4, generator=gen, **F64) for _ in range(3)]
    assert Th.kruskal_uniqueness(Fmt.CPTensor(torch.ones(4, **F64), F))            # 4+4+4 >= 2*4 + 2
    F6 = [torch.randn(4, 6, generator=gen, **F64) for _ in range(3)]
    assert not Th.kruskal_uniqueness(F6)                                        # 4+4+4 < 2*6 + 2
    bad = [F[0].clone(), F[1], F[2]]
    bad[0][:, 1] = bad[0][:, 0]                                                # k-rank 1 in mode 0: 1+4+4 < 10
    assert not Th.kruskal_uniqueness(bad)


# ---------------------------------------------------------------- generic rank: published values
@pytest.mark.parametrize("shape,rank", [
    ((2, 2, 2), 2),        # complex generic rank of 2x2x2 (typical real ranks 2 and 3; ten Berge 1991)
    ((3, 3, 3), 5),        # Strassen 1983: defective, the parameter count predicts 4
    ((4, 4, 4), 7),        # ceil(64 / 10)
    ((2, 3, 3), 3),
    ((3, 5, 5), 8),        # Strassen 1983: 3 x n x n with n odd has generic rank (3n + 1) / 2, not ceil(75 / 11) = 7
    ((3, 4), 3),           # matrices: the generic rank is min(I, J)
    ((2, 2, 2, 2), 4),
])
def test_generic_rank_published_values(shape, rank):
    assert Th.generic_rank(shape, seed=0) == rank


def test_secant_dimension_defective_3x3x3():
    "Rank-4 tensors of size 3x3x3 fill a hypersurface (dimension 26), not the whole 27-dim space (Strassen 1983)."
    assert Th.expected_secant_dimension((3, 3, 3), 4) == 27
    assert Th.secant_dimension((3, 3, 3), 4, seed=0) == 26
    assert Th.secant_dimension((3, 3, 3), 5, seed=0) == 27
    # a non-defective case matches the parameter count R (sum I_k - d + 1)
    assert Th.secant_dimension((4, 5, 6), 3, seed=0) == Th.expected_secant_dimension((4, 5, 6), 3) == 3 * 13


# ---------------------------------------------------------------- multilinear and TT ranks
def test_multilinear_and_tt_rank(gen):
    core = torch.randn(2, 3, 4, generator=gen, **F64)
    U = [torch.randn(n, r, generator=gen, **F64) for n, r in zip((5, 6, 7), (2, 3, 4))]
    assert Th.multilinear_rank(K.tucker_full(core, U)) == (2, 3, 4)
    cores = [torch.randn(1, 4, 2, generator=gen, **F64), torch.randn(2, 5, 3, generator=gen, **F64),
             torch.randn(3, 4, 2, generator=gen, **F64), torch.randn(2, 3, 1, generator=gen, **F64)]
    assert Th.tt_rank(K.tt_full(cores)) == (1, 2, 3, 2, 1)
    assert Th.tt_rank(D.tt_svd(K.tt_full(cores)).full()) == (1, 2, 3, 2, 1)


# ---------------------------------------------------------------- Paratuck-2, t-product, t-SVD
def test_paratuck2_matches_slice_formula(gen):
    I, J, Kk, P, Q = 4, 5, 3, 2, 3
    A, DA = torch.randn(I, P, generator=gen, **F64), torch.randn(Kk, P, generator=gen, **F64)
    H, DB = torch.randn(P, Q, generator=gen, **F64), torch.randn(Kk, Q, generator=gen, **F64)
    B = torch.randn(J, Q, generator=gen, **F64)
    X = Th.paratuck2(A, DA, H, DB, B)
    assert X.shape == (I, J, Kk)
    for k in range(Kk):
        assert_close(X[:, :, k], A @ torch.diag(DA[k]) @ H @ torch.diag(DB[k]) @ B.T, rtol=1e-10, atol=1e-12)


def _t_product_definition(A, B):
    "C[:, :, k] = sum_j A[:, :, j] @ B[:, :, (k - j) mod n3] (block-circulant product, Kilmer & Martin 2011)."
    n3 = A.shape[2]
    C = torch.zeros(A.shape[0], B.shape[1], n3, dtype=A.dtype)
    for k in range(n3):
        for j in range(n3):
            C[:, :, k] += A[:, :, j] @ B[:, :, (k - j) % n3]
    return C


@pytest.mark.parametrize("n3", [1, 4, 5])
def test_t_product_and_t_svd(n3, gen):
    A = torch.randn(4, 3, n3, generator=gen, **F64)
    B = torch.randn(3, 2, n3, generator=gen, **F64)
    assert_close(Th.t_product(A, B), _t_product_definition(A, B), rtol=1e-10, atol=1e-12)
    U, S, V = Th.t_svd(A)
    assert U.dtype == S.dtype == V.dtype == torch.float64
    assert_close(Th.t_product(Th.t_product(U, S), Th.t_transpose(V)), A, rtol=1e-10, atol=1e-12)
    # U has orthonormal t-columns: U^T * U is the identity tensor (identity in slice 0, zeros elsewhere)
    m = U.shape[1]
    ident = torch.zeros(m, m, n3, **F64)
    ident[:, :, 0] = torch.eye(m, **F64)
    assert_close(Th.t_product(Th.t_transpose(U), U), ident, rtol=0, atol=1e-10)
    # t_transpose reverses the t-product: (A * B)^T = B^T * A^T
    assert_close(Th.t_transpose(Th.t_product(A, B)), Th.t_product(Th.t_transpose(B), Th.t_transpose(A)),
                 rtol=1e-10, atol=1e-12)


def test_factor_match_score_permutation_and_scaling(gen):
    F = [torch.randn(n, 3, generator=gen, **F64) for n in (4, 5, 6)]
    perm = torch.tensor([2, 0, 1])
    G = [F[0][:, perm] * torch.tensor([2.0, -1.0, 0.5], **F64), F[1][:, perm], F[2][:, perm]]
    score, p = Th.factor_match_score(F, G)
    assert score == pytest.approx(1.0, abs=1e-12)
    assert_close(G[1][:, p], F[1], rtol=0, atol=0)
    score, _ = Th.factor_match_score(F, [torch.randn(n, 3, generator=gen, **F64) for n in (4, 5, 6)])
    assert score < 0.9


# ---------------------------------------------------------------- issue 9: bounds, validation, names
def test_kruskal_rank_bounds_its_work():
    "On main a 20 x 40 matrix ran for more than 120 s (binomial(40, 20) subsets) with no guard and no max_subsets."
    A = torch.randn(20, 40, generator=torch.Generator().manual_seed(0), **F64)
    with pytest.raises(ValueError, match=r"^max_subsets: .*20 x 40.*binomial\(40, 20\)"):
        Th.kruskal_rank(A, max_subsets=10 ** 6)
    with pytest.raises(ValueError, match=r"^max_subsets\b"):
        Th.kruskal_uniqueness([A, A, A], max_subsets=10 ** 6)
    assert Th.kruskal_rank(A[:4, :6], max_subsets=15) == 4


def test_symmetric_cp_power_refuses_infeasible_rank(gen):
    "On main symmetric_cp_power(5x5x5, rank=1000) returned 1000 components."
    T, _, _ = _odeco(5, 3, 3, gen)
    with pytest.raises(ValueError, match=r"^rank: expected at most n = 5 components"):
        Th.symmetric_cp_power(T, 1000, seed=0)
    assert Th.symmetric_cp_power(T, 5, seed=0)[0].rank == 5


def test_theory_options_name_themselves(gen):
    "On main n_iter=0 said 'expected a rank', kruskal_rank(tol=True) was accepted and tol errors varied in type."
    T, _, _ = _odeco(4, 2, 3, gen)
    with pytest.raises(ValueError, match=r"^n_iter\b"):
        Th.symmetric_cp_power(T, 2, n_iter=0)
    with pytest.raises(ValueError, match=r"^n_init\b"):
        Th.symmetric_cp_power(T, 2, n_init=0)
    with pytest.raises(TypeError, match=r"^tol\b"):
        Th.symmetric_cp_power(T, 2, tol="a")
    with pytest.raises(ValueError, match=r"^tol\b"):
        Th.symmetric_cp_power(T, 2, tol=-1.0)
    A = torch.randn(3, 4, generator=gen, **F64)
    with pytest.raises(TypeError, match=r"^rtol\b"):
        Th.kruskal_rank(A, rtol=True)
    with pytest.raises(TypeError, match=r"^rtol\b"):
        Th.multilinear_rank(T, rtol="a")
    with pytest.raises(ValueError, match=r"^rtol\b"):
        Th.tt_rank(T, rtol=-1.0)
    with pytest.raises(TypeError, match=r"^weights\b"):
        Th.factor_match_score([A], [A], weights=1)


def test_theory_refuses_half_precision_up_front(gen):
    "On main symmetric_cp_power ran silently in float16."
    T, _, _ = _odeco(4, 2, 3, gen)
    for dtype in (torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=r"^T: expected float32 or float64"):
            Th.symmetric_cp_power(T.to(dtype), 2, seed=0)
        with pytest.raises(TypeError, match=r"^T: expected float32 or float64"):
            Th.jennrich(T.to(dtype), 2, seed=0)
        with pytest.raises(TypeError, match=r"^A: expected float32 or float64"):
            Th.kruskal_rank(T[0].to(dtype))


def test_theory_accepts_numpy(gen):
    "On main np.int64 ranks and NumPy arrays were rejected."
    import numpy as np
    T, _, _ = _odeco(4, 2, 3, gen)
    r = np.int64(2)
    assert Th.symmetric_cp_power(T.numpy(), r, seed=0)[0].rank == 2
    assert Th.jennrich(T.numpy(), r, seed=0).rank == 2
    assert Th.expected_secant_dimension(np.array([3, 3, 3]), r) == 14
    assert Th.secant_dimension((np.int64(3), 3, 3), r, seed=0) == 14
    assert Th.multilinear_rank(T.numpy()) == (2, 2, 2) and Th.tt_rank(T.numpy()) == (1, 2, 2, 1)
    assert Th.kruskal_rank(T[0].numpy()) >= 1


def test_rank_functions_use_rtol_and_deprecate_tol(gen):
    T, _, _ = _odeco(4, 2, 3, gen)
    assert Th.multilinear_rank(T, rtol=1e-8) == (2, 2, 2)
    with pytest.warns(DeprecationWarning, match="tol= is deprecated, use rtol="):
        assert Th.multilinear_rank(T, tol=1e-8) == (2, 2, 2)
    with pytest.warns(DeprecationWarning):
        assert Th.kruskal_rank(torch.eye(3, **F64), tol=1e-8) == 3


# ---------------------------------------------------------------- symmetric_cp: one entry point for symmetric CP
def _sym_low_rank(n, R, m, g, dtype=torch.float64):
    "Symmetric sum_r lam_r v_r^{(x)m} with random unit (non-orthogonal) v_r and lam_r in [0.5, 1.5]."
    V = torch.randn(n, R, generator=g, dtype=dtype)
    V = V / V.norm(dim=0)
    lam = torch.rand(R, generator=g, dtype=dtype) + 0.5
    return K.cp_full(lam, [V] * m), lam, V


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 6), m=st.integers(3, 4), data=st.data(), method=st.sampled_from(["jennrich", "power"]),
       seed=st.integers(0, 10**6))
def test_symmetric_cp_recovers_random_low_rank_property(n, m, data, method, seed):
    R = data.draw(st.integers(1, n))
    g = torch.Generator().manual_seed(seed)
    T, lam, V = _sym_low_rank(n, R, m, g)
    cp, rec = Th.symmetric_cp(T, R, method=method, seed=seed)
    assert cp.ndim == m and cp.rank == R and all(torch.equal(A, cp.factors[0]) for A in cp.factors)
    assert rec.final_error < 1e-7, rec
    assert Th.factor_match_score([V], [cp.factors[0]])[0] > 1 - 1e-7
    assert_close(cp.weights.sort().values, lam.sort().values, rtol=1e-6, atol=1e-6)
    assert rel_err(cp.full(), T) < 1e-7


@pytest.mark.parametrize("n,R,m", [(3, 6, 5), (4, 10, 5), (3, 6, 6), (4, 3, 5)])
def test_symmetric_cp_order5_beyond_the_dimension(n, R, m, gen):
    "Jennrich on the n^a x n^a x n^c reshaping identifies up to binomial(n + a - 1, a) components, more than n."
    T, lam, V = _sym_low_rank(n, R, m, gen)
    cp, rec = Th.symmetric_cp(T, R, seed=1)
    assert rec.final_error < 1e-8 and Th.factor_match_score([V], [cp.factors[0]])[0] > 1 - 1e-8
    assert_close(cp.weights.sort().values, lam.sort().values, rtol=1e-7, atol=1e-7)


def test_symmetric_cp_signs_float32_and_mixed_weights(gen):
    T, lam, V = _sym_low_rank(5, 3, 4, gen)
    lam_signed = lam * torch.tensor([1.0, -1.0, 1.0], **F64)              # even order: signs are part of the tensor
    T = K.cp_full(lam_signed, [V] * 4)
    cp, _ = Th.symmetric_cp(T, 3, seed=0)
    assert_close(cp.weights.sort().values, lam_signed.sort().values, rtol=1e-8, atol=1e-8)
    with pytest.raises(RuntimeError, match="use method='jennrich'"):
        Th.symmetric_cp(T, 3, method="power", seed=0)                     # no definite contraction exists
    T3, lam3, V3 = _sym_low_rank(5, 3, 3, gen, dtype=torch.float32)
    cp32, rec32 = Th.symmetric_cp(T3, 3, method="power", seed=0)
    assert cp32.weights.dtype == torch.float32 and rec32.final_error < 1e-4
    T3n = K.cp_full(-lam3, [V3] * 3)                                       # odd order: lam > 0, the sign moves into v
    cpn, _ = Th.symmetric_cp(T3n, 3, seed=0)
    assert bool((cpn.weights > 0).all()) and rel_err(cpn.full(), T3n) < 1e-4


def test_symmetric_cp_noisy_moment_keeps_warnings_in_the_record(gen):
    T, lam, V = _sym_low_rank(6, 4, 3, gen)
    E = torch.randn(6, 6, 6, generator=gen, **F64)
    E = sum(E.permute(p) for p in __import__("itertools").permutations(range(3))) / 6
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                  # nothing escapes: diagnostics go to the record
        cp, rec = Th.symmetric_cp(T + 1e-3 * E, 4, seed=0)
    assert isinstance(rec.info["warnings"], list) and rec.final_error < 1e-2
    assert Th.factor_match_score([V], [cp.factors[0]])[0] > 0.99


def test_symmetric_cp_bad_input(gen):
    T, _, _ = _sym_low_rank(4, 3, 5, gen)
    with pytest.raises(ValueError, match=r"^rank: method='jennrich' identifies at most 10"):
        Th.symmetric_cp(T, 11)
    with pytest.raises(ValueError, match=r"^rank: method='power' identifies at most 4 .*try method='jennrich'"):
        Th.symmetric_cp(T, 5, method="power")
    with pytest.raises(ValueError, match=r"^rank"):
        Th.symmetric_cp(T, 0)
    with pytest.raises(ValueError, match=r"^method"):
        Th.symmetric_cp(T, 2, method="als")
    with pytest.raises(ValueError, match=r"^T: expected a symmetric"):
        Th.symmetric_cp(torch.randn(3, 3, 3, generator=gen, **F64), 2)
    with pytest.raises(ValueError, match=r"^T: expected a cubical"):
        Th.symmetric_cp(torch.zeros(3, 3, 4, **F64), 2)
    with pytest.raises(ValueError, match=r"^n_iter"):
        Th.symmetric_cp(T, 2, n_iter=-1)
    with pytest.raises(ValueError, match=r"^n_init"):
        Th.symmetric_cp(T, 2, n_init=0)
    with pytest.raises(TypeError, match=r"^T"):
        Th.symmetric_cp(T.half(), 2)
    bad = T.clone(); bad[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^T"):
        Th.symmetric_cp(bad, 2)


def test_no_private_twins_of_symmetric_cp():
    "derivatives and mixtures call theory.symmetric_cp; none of them keeps its own symmetric CP."
    import tensornn.derivatives as Dm
    import tensornn.mixtures as Mx
    for mod, twins in ((Dm, ("_sym_jennrich", "_sym_power", "_symmetric_decomposition")),
                       (Mx, ("_directions_jennrich", "_directions_order3", "_directions_order5", "_symmetric_decomposition"))):
        for twin in twins:
            assert not hasattr(mod, twin), (mod.__name__, twin)
    assert Mx.symmetric_cp is Th.symmetric_cp and Dm.symmetric_cp is Th.symmetric_cp


# ---------------------------------------------------------------- generic identifiability (issue 16)
@pytest.mark.parametrize("n", [4, 5, 6, 7])
def test_cp_identifiability_cubic_up_to_one_below_generic_rank(n):
    r_gen = Th.generic_rank((n, n, n), seed=0)
    top = Th.cp_identifiability((n, n, n), r_gen - 1, seed=1)
    assert top.locally_identifiable and not top.defective and top.count_allows
    above = Th.cp_identifiability((n, n, n), r_gen, seed=2)
    assert not above.locally_identifiable and not above.count_allows      # n^3/(3n-2) is not an integer for n >= 3
    assert Th.cp_identifiability((n, n, n), (3 * n - 2) // 2, seed=3).kruskal
    assert not Th.cp_identifiability((n, n, n), (3 * n - 2) // 2 + 1, seed=3).kruskal


@pytest.mark.parametrize("shape,rank", [((3, 4, 4), 5), ((2, 2, 2, 2), 3), ((2, 2, 3, 3), 5)])
def test_cp_identifiability_defective_cases_are_refused(shape, rank):
    rep = Th.cp_identifiability(shape, rank, seed=0)
    assert rep.count_allows and rep.defective and not rep.locally_identifiable
    assert rep.dimension == rep.expected - 1
    assert Th.cp_identifiability(shape, rank - 1, seed=0).locally_identifiable


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(2, 5), min_size=2, max_size=4), rank=st.integers(1, 8), seed=st.integers(0, 1000))
def test_cp_identifiability_consistency_property(shape, rank, seed):
    rep = Th.cp_identifiability(tuple(shape), rank, seed=seed)
    assert rep.dimension <= min(rep.expected, rep.ambient)
    assert rep.locally_identifiable == (rep.count_allows and not rep.defective)
    if rep.kruskal and len(shape) >= 3:
        assert rep.locally_identifiable                                    # Kruskal's uniqueness implies finiteness
    if len(shape) == 2 and rank >= 2:
        assert not rep.locally_identifiable                                # matrices: B can come from any basis


# ---------------------------------------------------------------- 2 x 2 x 2: hyperdeterminant, typical ranks, W
def _pencil_discriminant(T, mode):
    "Discriminant of det(x S0 + y S1) for the two slices of T along `mode` (an independent formula for Det)."
    S0, S1 = T.select(-3 + mode, 0), T.select(-3 + mode, 1)
    d0, d1 = torch.linalg.det(S0), torch.linalg.det(S1)
    return (torch.linalg.det(S0 + S1) - d0 - d1) ** 2 - 4 * d0 * d1


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10 ** 6))
def test_hyperdeterminant_pencils_and_invariance_property(seed):
    g = torch.Generator().manual_seed(seed)
    T = torch.randn(7, 2, 2, 2, generator=g, **F64)
    D = Th.hyperdeterminant_222(T)
    for mode in range(3):
        assert_close(D, _pencil_discriminant(T, mode), rtol=1e-9, atol=1e-10)
    M = torch.randn(3, 2, 2, generator=g, **F64)                           # Det(T x1 M1 x2 M2 x3 M3) = prod det(Mk)^2 Det(T)
    TM = torch.einsum("bijk,ai,cj,dk->bacd", T, M[0], M[1], M[2])
    assert_close(Th.hyperdeterminant_222(TM), D * torch.linalg.det(M).prod() ** 2, rtol=1e-8, atol=1e-10)


def test_hyperdeterminant_known_values():
    e1, e2 = torch.eye(2, **F64)
    o = lambda x, y, z: torch.einsum("i,j,k->ijk", x, y, z)
    assert float(Th.hyperdeterminant_222(o(e1, e1, e1) + o(e2, e2, e2))) == 1.0           # rank 2
    assert float(Th.hyperdeterminant_222(o(e1 + e2, e1 - e2, e1))) == 0.0                 # rank 1
    W = o(e1, e1, e2) + o(e1, e2, e1) + o(e2, e1, e1)
    assert float(Th.hyperdeterminant_222(W)) == 0.0                                        # rank 3, border rank 2
    R3 = torch.stack([torch.eye(2, **F64), torch.tensor([[0.0, -1.0], [1.0, 0.0]], **F64)], -1)
    assert float(Th.hyperdeterminant_222(R3)) == -4.0                                      # det(xI + yJ) = x^2 + y^2


def _best_rank2_error(T, n_starts=4):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return min(D.cp_als(T, 2, init="random", seed=s, n_iter=600, tol=1e-15)[1].final_error for s in range(n_starts))


def test_hyperdeterminant_sign_decides_rank_two_fits():
    g = torch.Generator().manual_seed(5)
    T = torch.randn(40, 2, 2, 2, generator=g, **F64)
    scaled = Th.hyperdeterminant_222(T) / T.flatten(1).norm(dim=1) ** 4
    pos = T[scaled > 0.03][:4]
    neg = T[scaled < -0.03][:4]
    assert len(pos) == 4 and len(neg) == 4
    assert all(_best_rank2_error(t) < 1e-8 for t in pos)
    assert all(_best_rank2_error(t) > 1e-3 for t in neg)


def test_rank2_probability_is_pi_over_4():
    import math
    est = Th.rank2_probability_222(4 * 10 ** 5, seed=3)
    assert isinstance(est, Th.ProportionEstimate) and est.n_samples == 4 * 10 ** 5
    assert est.low < est.estimate < est.high and est.contains(math.pi / 4)
    assert not est.contains(0.77) and not est.contains(0.80)
    narrow = Th.rank2_probability_222(4 * 10 ** 5, seed=3, level=0.5)
    assert narrow.estimate == est.estimate and narrow.high - narrow.low < est.high - est.low
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert Th.rank2_probability_222(1000, generator=g1) == Th.rank2_probability_222(1000, generator=g2)


# ---------------------------------------------------------------- rank-(L, L, 1) block terms
def _random_ll1(shape, R, L, g, dtype=torch.float64):
    I, J, K = shape
    return Th.LL1Tensor(torch.randn(I, R, L, generator=g, dtype=dtype), torch.randn(J, R, L, generator=g, dtype=dtype),
                        torch.randn(K, R, generator=g, dtype=dtype))


def test_ll1_tensor_matches_definition(gen):
    ll1 = _random_ll1((4, 5, 3), 3, 2, gen)
    dense = sum(torch.einsum("ij,k->ijk", ll1.A[:, r] @ ll1.B[:, r].T, ll1.C[:, r]) for r in range(3))
    assert_close(ll1.full(), dense)
    assert_close(ll1.blocks().sum(0), dense)
    assert all(torch.linalg.matrix_rank(ll1.blocks()[r, :, :, 0]) == 2 for r in range(3))


@pytest.mark.parametrize("shape,R,L", [((6, 6, 5), 3, 2), ((5, 5, 4), 2, 2), ((7, 6, 4), 2, 3)])
def test_ll1_als_recovers_blocks(shape, R, L, gen):
    import itertools
    true = _random_ll1(shape, R, L, gen)
    T = true.full()
    fits = [Th.ll1_als(T, R, L, seed=s, tol=1e-14, n_iter=1000) for s in range(5)]
    est, rec = min(fits, key=lambda f: f[1].final_error)
    assert isinstance(rec, D.FitRecord) and rec.converged and rec.final_error < 1e-8
    Bt, Be = true.blocks(), est.blocks()
    err = min(max(rel_err(Be[p[r]], Bt[r]) for r in range(R)) for p in itertools.permutations(range(R)))
    assert err < 1e-6
    assert rec.errors == sorted(rec.errors, reverse=True) or max(b - a for a, b in zip(rec.errors, rec.errors[1:])) < 1e-12


def test_ll1_als_with_L1_is_cp_and_float32(gen):
    F = [torch.randn(n, 3, generator=gen, **F64) for n in (5, 4, 6)]
    T = K.cp_full(torch.ones(3, **F64), F)
    est, rec = min((Th.ll1_als(T, 3, 1, seed=s, tol=1e-14) for s in range(3)), key=lambda f: f[1].final_error)
    assert rec.final_error < 1e-8
    score, _ = Th.factor_match_score([est.A[:, :, 0], est.B[:, :, 0], est.C], F)
    assert score > 1 - 1e-6
    est32, rec32 = Th.ll1_als(T.float(), 3, 1, seed=0, n_iter=50)
    assert est32.A.dtype == torch.float32 and rec32.n_iter <= 50 and rec32.final_error == rec32.final_error


def test_ll1_als_cannot_fit_a_generic_cp_tensor_of_higher_rank(gen):
    T = K.cp_full(torch.ones(6, **F64), [torch.randn(n, 6, generator=gen, **F64) for n in (6, 6, 5)])
    assert min(Th.ll1_als(T, 3, 2, seed=s)[1].final_error for s in range(3)) > 1e-2


def test_new_theory_functions_bad_input(gen):
    T = torch.randn(4, 4, 3, generator=gen, **F64)
    with pytest.raises(ValueError, match=r"^L\b"):
        Th.ll1_als(T, 2, 5)
    with pytest.raises(ValueError, match=r"^n_terms\b"):
        Th.ll1_als(T, 0, 1)
    with pytest.raises(ValueError, match=r"^T\b"):
        Th.ll1_als(torch.zeros(3, 3, 3, **F64), 1, 1)
    with pytest.raises(ValueError, match=r"^T\b"):
        Th.ll1_als(T.clone().fill_(float("nan")), 1, 1)
    with pytest.raises(TypeError, match=r"^generator\b"):
        Th.ll1_als(T, 1, 1, generator=3)
    with pytest.raises(ValueError, match=r"^T\b"):
        Th.hyperdeterminant_222(torch.ones(2, 3, 2, **F64))
    with pytest.raises(TypeError, match=r"^T\b"):
        Th.hyperdeterminant_222(torch.ones(2, 2, 2, dtype=torch.float16))
    with pytest.raises(ValueError, match=r"^T\b"):
        Th.hyperdeterminant_222(torch.full((2, 2, 2), float("inf")))
    with pytest.raises(TypeError, match=r"^n_samples\b"):
        Th.rank2_probability_222(10.5)
    with pytest.raises(ValueError, match=r"^level\b"):
        Th.rank2_probability_222(10, level=1.5)
    with pytest.raises(ValueError, match=r"^shape\b"):
        Th.cp_identifiability((0, 3, 3), 2)
    with pytest.raises(TypeError, match=r"^rank\b"):
        Th.cp_identifiability((3, 3, 3), 2.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_hyperdeterminant_and_ll1_on_cuda(gen):
    T = torch.randn(100, 2, 2, 2, generator=gen, **F64)
    assert_close(Th.hyperdeterminant_222(T.cuda()).cpu(), Th.hyperdeterminant_222(T))
    X = _random_ll1((6, 6, 5), 3, 2, gen).full().cuda()
    est, rec = min((Th.ll1_als(X, 3, 2, seed=s, tol=1e-14, n_iter=1000) for s in range(4)), key=lambda f: f[1].final_error)
    assert est.A.device.type == "cuda" and rec.final_error < 1e-8


# ---------------------------------------------------------------- issue 16: the spiked tensor model
from tensornn.theory import spiked_tensor, tensor_power_iteration  # noqa: E402


def test_spiked_tensor_is_symmetric_with_unit_spike_and_reproducible():
    T, v = spiked_tensor(7, 3.0, seed=4)
    for perm in [(1, 0, 2), (0, 2, 1), (2, 1, 0)]:
        assert torch.equal(T, T.permute(*perm)) or float((T - T.permute(*perm)).abs().max()) < 1e-12
    assert abs(float(v.norm()) - 1) < 1e-12
    T2, v2 = spiked_tensor(7, 3.0, seed=4)
    assert torch.equal(T, T2) and torch.equal(v, v2)
    noise = T - 3.0 * torch.einsum("i,j,k->ijk", v, v, v)
    assert float((noise - spiked_tensor(7, 0.0, seed=4)[0]).abs().max()) < 1e-12      # the same noise, signal added


@pytest.mark.parametrize("init", ["random", "unfold"])
def test_power_iteration_finds_a_strong_spike_and_not_a_weak_one(init):
    strong = [abs(float(tensor_power_iteration(T, init=init, n_starts=1, seed=s)[0] @ v))
              for s in range(4) for T, v in [spiked_tensor(25, 30.0, seed=s)]]
    weak = [abs(float(tensor_power_iteration(T, init=init, n_starts=1, seed=s)[0] @ v))
            for s in range(4) for T, v in [spiked_tensor(25, 0.3, seed=s)]]
    assert min(strong) > 0.99 and max(weak) < 0.7


def test_power_iteration_returns_the_best_start_and_its_error():
    T, v = spiked_tensor(10, 8.0, seed=1)
    u, rec = tensor_power_iteration(T, n_starts=6, seed=0)
    value = float(torch.einsum("ijk,i,j,k->", T, u, u, u))
    assert abs(value - max(rec.info["values"])) < 1e-10 and abs(float(u.norm()) - 1) < 1e-12
    lam_u3 = value * torch.einsum("i,j,k->ijk", u, u, u)
    assert abs(rec.errors[0] - float((T - lam_u3).norm() / T.norm())) < 1e-10


# ---------------------------------------------------------------- existence of a best approximation (issue 16)
def _first_rank3_222(L: torch.Tensor, n_dir: int, seed: int) -> float:
    "Upper estimate of the distance from L to the real rank-3 2x2x2 tensors: first Det < 0 along random directions."
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(n_dir, 2, 2, 2, generator=g, **F64)
    D = D / D.flatten(1).norm(dim=1)[:, None, None, None]
    ts = torch.linspace(0, 3 * float(L.norm()), 2000, **F64)
    neg = Th.hyperdeterminant_222(L + ts[:, None, None, None, None] * D) < 0
    return float(ts[neg.float().argmax(0)][neg.any(0)].min())


@pytest.mark.parametrize("seed", range(12))
def test_cp_existence_radius_is_below_the_distance_to_rank3_222(seed):
    "In 2x2x2 every tensor has border rank <= 2, so the certified distance 2*radius must not reach a rank-3 tensor."
    cp = Fmt.random_cp((2, 2, 2), 2, seed=seed, **F64)
    r = Th.cp_existence_radius(cp, seed=seed)
    assert r > 0
    assert 2 * r <= _first_rank3_222(cp.full(), 2000, seed)


@pytest.mark.parametrize("t", [0.3, 0.1, 0.03])
def test_cp_existence_radius_respects_a_border_rank_tensor(t, gen):
    "L_t = ((a + t b)^3 - a^3) / t is at distance O(t) from W = aab + aba + baa (border rank 2, rank 3)."
    a, b = torch.randn(3, generator=gen, **F64), torch.randn(3, generator=gen, **F64)
    ab = a + t * b
    cp = Fmt.CPTensor(torch.tensor([1 / t, -1 / t], **F64), [torch.stack([ab, a], 1)] * 3)
    W = K.cp_full(torch.ones(3, **F64), [torch.stack([a, a, b], 1), torch.stack([a, b, a], 1), torch.stack([b, a, a], 1)])
    dist = float((cp.full() - W).norm())
    assert 0 < 2 * Th.cp_existence_radius(cp, seed=0) <= dist


@pytest.mark.parametrize("seed", range(4))
def test_cp_existence_radius_scaling(seed):
    "Linear in L, blind to how a term's scale is split between factors, and the same for a factor list."
    cp = Fmt.random_cp((4, 3, 5), 3, seed=seed, **F64)
    r = Th.cp_existence_radius(cp, seed=1)
    assert r > 0
    assert Th.cp_existence_radius(Fmt.CPTensor(0.1 * cp.weights, cp.factors), seed=1) == pytest.approx(0.1 * r, rel=1e-9)
    A, B, C = cp.factors
    D = torch.diag(torch.tensor([2.0, 0.5, 3.0], **F64))
    split = Fmt.CPTensor(cp.weights, [A @ D, B @ torch.linalg.inv(D), C])
    assert Th.cp_existence_radius(split, seed=1) == pytest.approx(r, rel=1e-9)
    assert Th.cp_existence_radius([A * cp.weights, B, C], seed=1) == pytest.approx(r, rel=1e-9)


def test_cp_existence_radius_inside_the_ball_every_222_tensor_has_rank_2(gen):
    "Noise just inside 2*radius (any direction) leaves a 2x2x2 tensor of rank <= 2 (hyperdeterminant >= 0)."
    cp = Fmt.random_cp((2, 2, 2), 2, seed=7, **F64)
    r = Th.cp_existence_radius(cp, seed=0)
    N = torch.randn(20000, 2, 2, 2, generator=gen, **F64)
    T = cp.full() + 0.999 * 2 * r * N / N.flatten(1).norm(dim=1)[:, None, None, None]
    assert bool((Th.hyperdeterminant_222(T) >= 0).all())


def test_cp_existence_radius_special_cases_and_bad_input(gen):
    assert Th.cp_existence_radius(Fmt.random_cp((3, 3, 3), 1, seed=0, **F64)) == math.inf
    assert Th.cp_existence_radius(Fmt.random_cp((2, 2, 7), 3, seed=0, **F64)) == 0.0      # R above two mode sizes
    A = torch.randn(3, 2, generator=gen, **F64)
    assert Th.cp_existence_radius([A, A, torch.zeros(3, 2, **F64)]) == 0.0                  # a zero term: no certificate
    with pytest.raises(TypeError, match="^cp"):
        Th.cp_existence_radius(torch.ones(3, 3, 3, **F64))
    with pytest.raises(ValueError, match="^cp"):
        Th.cp_existence_radius([A, A, A, A])
    with pytest.raises(ValueError, match=r"^cp\[1\]"):
        Th.cp_existence_radius([A, torch.full((3, 2), math.nan, **F64), A])
    with pytest.raises(TypeError, match=r"^cp\[1\]"):
        Th.cp_existence_radius([A, A.float(), A])
    with pytest.raises(TypeError, match=r"^cp\[0\]"):
        Th.cp_existence_radius([A.half()] * 3)
    with pytest.raises(ValueError, match="^n_pairs"):
        Th.cp_existence_radius([A, A, A], n_pairs=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cp_existence_radius_on_gpu():
    cp = Fmt.random_cp((4, 4, 4), 3, seed=0, **F64)
    gpu = Fmt.CPTensor(cp.weights.cuda(), [A.cuda() for A in cp.factors])
    g = torch.Generator(device="cuda").manual_seed(0)
    assert Th.cp_existence_radius(gpu, generator=g) > 0
