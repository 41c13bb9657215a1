"""Decomposition algorithms recover exact low-rank tensors (hypothesis property tests) and keep dtypes."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from conftest import DTYPES, LargestResult, rel_err, well_conditioned_factors
from tensornn import kernels as K
from tensornn import formats as Fmt
from tensornn import decompositions as D
from tensornn.testing import assert_close

pytestmark = [pytest.mark.usefixtures("single_thread")]


EXACT = 1e-6


def cp_tensor(shape, R, g, dtype=torch.float64):
    F = well_conditioned_factors(shape, R, gen=g, dtype=dtype)
    w = (1.0 + torch.rand(R, generator=g, dtype=torch.float64)).to(dtype)    # weights in [1, 2]
    return K.cp_full(w, F), w, F


def tucker_tensor(shape, ranks, g, dtype=torch.float64):
    core = torch.randn(*ranks, generator=g, dtype=dtype)
    F = [torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64)).Q.to(dtype) for n, r in zip(shape, ranks)]
    return K.tucker_full(core, F)


def tt_tensor(shape, ranks, g, dtype=torch.float64):
    r = [1] + list(ranks) + [1]
    return K.tt_full([torch.randn(r[k], n, r[k + 1], generator=g, dtype=dtype) for k, n in enumerate(shape)])


def feasible_tt_ranks(shape, ranks):
    "Cap TT ranks so that they are the true TT ranks of generic random cores: r_k <= r_{k-1} n_k, r_k <= n_{k+1} r_{k+1}."
    r = [1] + list(ranks[:len(shape) - 1]) + [1]
    for k in range(1, len(shape)):
        r[k] = min(r[k], r[k - 1] * shape[k - 1])
    for k in range(len(shape) - 1, 0, -1):
        r[k] = min(r[k], shape[k] * r[k + 1])
    return r[1:-1]


def best_cp_fit(T, R, *, n_iter=300, seeds=(0, 1, 2, 3)):
    "cp_als with the SVD init, then random inits until one is exact; returns the best relative error."
    best = math.inf
    for init, seed in [("svd", 0)] + [("random", s) for s in seeds]:
        cp, rec = D.cp_als(T, R, n_iter=n_iter, tol=1e-14, init=init, seed=seed)
        best = min(best, rel_err(cp.full(), T))
        if best < EXACT:
            break
    return best


# ---------------------------------------------------------------- CP-ALS
@settings(max_examples=20)
@given(shape=st.tuples(st.integers(4, 7), st.integers(4, 7), st.integers(4, 7)), R=st.integers(1, 3),
       seed=st.integers(0, 10**6))
def test_cp_als_recovers_exact_low_rank_property(shape, R, seed):
    g = torch.Generator().manual_seed(seed)
    T, _, _ = cp_tensor(shape, R, g)
    assert best_cp_fit(T, R) < EXACT


@pytest.mark.parametrize("shape,R", [((5, 6, 7, 4), 3), ((8, 8, 8), 5)])
def test_cp_als_recovers_exact_low_rank(shape, R, gen):
    T, w, F = cp_tensor(shape, R, gen)
    assert best_cp_fit(T, R, n_iter=500) < EXACT


def test_cp_als_record_and_format(gen):
    T, _, _ = cp_tensor((5, 6, 7), 3, gen)
    cp, rec = D.cp_als(T, 3, n_iter=40, tol=0.0, init="random", seed=0)
    assert isinstance(cp, Fmt.CPTensor) and cp.rank == 3 and cp.shape == T.shape
    assert isinstance(rec, D.FitRecord)
    assert rec.n_iter == len(rec.errors) <= 40
    assert all(isinstance(e, float) and math.isfinite(e) for e in rec.errors)
    assert isinstance(rec.converged, bool) and isinstance(rec.message, str)
    # the recorded last error is the error of the returned model
    assert abs(rec.errors[-1] - rel_err(cp.full(), T)) < 1e-6
    # ALS (with or without line search) does not end worse than it started
    assert rec.errors[-1] <= rec.errors[0] + 1e-12


def test_cp_als_converges_and_stops_early(gen):
    T, _, _ = cp_tensor((5, 6, 7), 2, gen)
    cp, rec = D.cp_als(T, 2, n_iter=1000, tol=1e-10, init="svd")
    assert rec.converged and rec.n_iter < 1000
    assert rel_err(cp.full(), T) < 1e-5


def test_cp_als_reproducible_with_seed_and_generator(gen):
    T = torch.randn(4, 5, 6, generator=gen, dtype=torch.float64)
    a, _ = D.cp_als(T, 3, n_iter=10, init="random", seed=7)
    b, _ = D.cp_als(T, 3, n_iter=10, init="random", seed=7)
    c, _ = D.cp_als(T, 3, n_iter=10, init="random", generator=torch.Generator().manual_seed(7))
    # same random init; allow last-bit differences from the BLAS (memory alignment can change its code path)
    assert_close(a.full(), b.full(), rtol=1e-10, atol=1e-12)
    assert_close(a.full(), c.full(), rtol=1e-10, atol=1e-12)
    d, _ = D.cp_als(T, 3, n_iter=10, init="random", seed=8)
    assert rel_err(d.full(), a.full()) > 1e-6, "different seeds should give different inits"
    state = torch.random.get_rng_state()
    D.cp_als(T, 3, n_iter=2, init="random", seed=1)
    assert torch.equal(state, torch.random.get_rng_state()), "cp_als touched the global RNG"


def test_cp_als_init_from_cptensor(gen):
    "Starting at the exact solution, ALS stays there."
    T, w, F = cp_tensor((5, 6, 7), 3, gen)
    cp, rec = D.cp_als(T, 3, n_iter=5, init=Fmt.CPTensor(w, F))
    assert rel_err(cp.full(), T) < 1e-10


@pytest.mark.parametrize("line_search", [True, False])
def test_cp_als_with_and_without_line_search(line_search, gen):
    T, _, _ = cp_tensor((6, 6, 6), 3, gen)
    cp, rec = D.cp_als(T, 3, n_iter=300, tol=1e-14, init="svd", line_search=line_search)
    assert rec.errors[-1] < 1e-4


def test_cp_als_residual_options_agree_in_float64(gen):
    "Without line search the three error formulas drive identical iterations; above the floor they agree."
    T = torch.randn(8, 9, 10, generator=gen, dtype=torch.float64)
    errs = {r: D.cp_als(T, 3, n_iter=20, tol=0.0, seed=0, line_search=False, residual=r)[1].errors
            for r in ("auto", "gram", "exact")}
    assert errs["auto"] == errs["gram"]
    assert max(abs(a - b) for a, b in zip(errs["gram"], errs["exact"])) < 1e-12


def test_cp_als_exact_errors_with_line_search_are_the_true_errors(gen):
    "residual='exact' takes each sweep's error and the next first half product from one pass (extrapolation included)."
    T = torch.randn(7, 8, 9, 5, generator=gen, dtype=torch.float64)
    for k in (1, 3, 6, 11):
        cp, rec = D.cp_als(T, 3, n_iter=k, tol=0.0, seed=0, residual="exact")
        assert rec.n_iter == k and abs(rec.errors[-1] - rel_err(cp.full(), T)) < 1e-12
    gram = D.cp_als(T, 3, n_iter=11, tol=0.0, seed=0, residual="gram", line_search=False)[1].errors
    exact = D.cp_als(T, 3, n_iter=11, tol=0.0, seed=0, residual="exact", line_search=False)[1].errors
    assert max(abs(a - b) for a, b in zip(gram, exact)) < 1e-12


def test_cp_als_exact_residual_where_the_gram_formula_fails(gen):
    "float32 with noise 1e-5: the Gram formula's error is rounding noise, the default reports the true error."
    T, _, _ = cp_tensor((40, 40, 40), 4, gen)
    T = (T + 1e-5 * T.norm() / 40 ** 1.5 * torch.randn(T.shape, generator=gen, dtype=T.dtype)).float()
    cp, rec = D.cp_als(T, 4, n_iter=30, tol=0.0, seed=0)
    true_err = float((cp.full().double() - T.double()).norm() / T.double().norm())
    assert abs(rec.errors[-1] - true_err) < 0.2 * true_err
    with pytest.raises(ValueError, match=r"^residual\b"):
        D.cp_als(T, 4, residual="fast")


def test_cp_als_auto_is_exact_from_the_first_error_below_the_floor(gen):
    "Once the default's error falls below 10 sqrt(eps), every later error is the exact residual (same iterates)."
    T, _, _ = cp_tensor((30, 31, 32), 4, gen)
    T = (T + 1e-5 * T.norm() / 30 ** 1.5 * torch.randn(T.shape, generator=gen, dtype=T.dtype)).float()
    auto = D.cp_als(T, 4, n_iter=25, tol=0.0, seed=0, line_search=False)[1].errors
    exact = D.cp_als(T, 4, n_iter=25, tol=0.0, seed=0, line_search=False, residual="exact")[1].errors
    floor = 10 * torch.finfo(torch.float32).eps ** 0.5
    first = next(i for i, e in enumerate(auto) if e < floor)
    assert 0 < first < len(auto) - 5 and auto[first:] == exact[first:]
    assert auto[:first] != exact[:first]                       # above the floor: the cheap estimate


@pytest.mark.parametrize("dtype", DTYPES)
def test_cp_als_keeps_dtype(dtype, gen):
    T, _, _ = cp_tensor((5, 6, 7), 2, gen, dtype)
    cp, rec = D.cp_als(T, 2, n_iter=50, init="svd")
    assert cp.dtype == dtype and cp.weights.dtype == dtype and all(A.dtype == dtype for A in cp.factors)
    assert cp.full().dtype == dtype
    assert rec.errors[-1] < (1e-3 if dtype == torch.float32 else 1e-6)


# ---------------------------------------------------------------- nonnegative CP
def test_nn_cp_nonnegative_and_fits(gen):
    shape, R = (6, 7, 8), 3
    F = [torch.rand(n, R, generator=gen, dtype=torch.float64) for n in shape]
    T = K.cp_full(torch.ones(R, dtype=torch.float64), F)
    best = math.inf
    for seed in range(3):
        cp, rec = D.nn_cp(T, R, n_iter=500, seed=seed)
        assert isinstance(cp, Fmt.CPTensor)
        assert all(bool((A >= 0).all()) for A in cp.factors) and bool((cp.weights >= 0).all())
        assert rec.errors[-1] <= rec.errors[0] + 1e-12
        best = min(best, rel_err(cp.full(), T))
    assert best < 1e-3


@pytest.mark.parametrize("dtype", DTYPES)
def test_nn_cp_keeps_dtype(dtype, gen):
    T = torch.rand(4, 5, 6, generator=gen, dtype=dtype)
    cp, _ = D.nn_cp(T, 2, n_iter=20, seed=0)
    assert cp.dtype == dtype and cp.full().dtype == dtype


# ---------------------------------------------------------------- Tucker
tucker_cases = st.tuples(st.integers(2, 6), st.integers(2, 6), st.integers(2, 6)).flatmap(
    lambda s: st.tuples(st.just(s), st.tuples(*[st.integers(1, n) for n in s])))


@settings(max_examples=25)
@given(case=tucker_cases, seed=st.integers(0, 10**6))
def test_hosvd_hooi_recover_exact_tucker_property(case, seed):
    shape, ranks = case
    # a Tucker rank is only realisable when each r_k <= prod of the other ranks
    ranks = tuple(min(r, math.prod(ranks) // r) for r in ranks)
    g = torch.Generator().manual_seed(seed)
    T = tucker_tensor(shape, ranks, g)
    tk = D.hosvd(T, ranks)
    assert isinstance(tk, Fmt.TuckerTensor) and tuple(tk.rank) == ranks
    assert rel_err(tk.full(), T) < EXACT
    tk2, rec = D.hooi(T, ranks, n_iter=10)
    assert tuple(tk2.rank) == ranks and rel_err(tk2.full(), T) < EXACT


def test_hosvd_factors_orthonormal_and_tol(gen):
    T = tucker_tensor((6, 7, 8), (2, 3, 4), gen)
    tk = D.hosvd(T, (2, 3, 4))
    for U in tk.factors:
        assert_close(U.T @ U, torch.eye(U.shape[1], dtype=U.dtype), rtol=0, atol=1e-10)
    # rank found from a tolerance
    tk = D.hosvd(T, tol=1e-8)
    assert tuple(tk.rank) == (2, 3, 4) and rel_err(tk.full(), T) < EXACT
    # no rank: the full multilinear rank, exact
    tk = D.hosvd(T)
    assert rel_err(tk.full(), T) < 1e-10


def test_hooi_improves_on_hosvd(gen):
    T = tucker_tensor((6, 7, 8), (3, 3, 3), gen) + 0.3 * torch.randn(6, 7, 8, generator=gen, dtype=torch.float64)
    e0 = rel_err(D.hosvd(T, (2, 2, 2)).full(), T)
    tk, rec = D.hooi(T, (2, 2, 2), n_iter=50)
    assert isinstance(rec, D.FitRecord) and rec.n_iter == len(rec.errors)
    assert rel_err(tk.full(), T) <= e0 + 1e-12
    assert abs(rec.errors[-1] - rel_err(tk.full(), T)) < 1e-8


@pytest.mark.parametrize("dtype", DTYPES)
def test_tucker_keeps_dtype(dtype, gen):
    T = torch.randn(4, 5, 6, generator=gen, dtype=dtype)
    assert D.hosvd(T, (2, 2, 2)).full().dtype == dtype
    tk, _ = D.hooi(T, (2, 2, 2), n_iter=3)
    assert tk.dtype == tk.core.dtype == tk.full().dtype == dtype


# ---------------------------------------------------------------- tensor trains
tt_cases = st.lists(st.integers(2, 4), min_size=2, max_size=5).flatmap(
    lambda s: st.tuples(st.just(tuple(s)), st.tuples(*[st.integers(1, 4) for _ in s[:-1]])))


@settings(max_examples=25)
@given(case=tt_cases, seed=st.integers(0, 10**6))
def test_tt_svd_recovers_exact_tt_property(case, seed):
    shape, ranks = case
    ranks = feasible_tt_ranks(shape, list(ranks))
    g = torch.Generator().manual_seed(seed)
    T = tt_tensor(shape, ranks, g)
    tt = D.tt_svd(T, rank=max(ranks))
    assert isinstance(tt, Fmt.TTTensor)
    assert rel_err(tt.full(), T) < EXACT
    tt = D.tt_svd(T, tol=1e-10)
    assert rel_err(tt.full(), T) < EXACT
    assert tuple(tt.rank) == (1, *ranks, 1)          # generic random cores: the TT ranks are exactly these


def test_tt_svd_tolerance_bound(gen):
    "TT-SVD with relative accuracy `tol` returns an error <= tol * ||T|| (Oseledets 2011)."
    T = torch.randn(4, 5, 6, 3, generator=gen, dtype=torch.float64)
    for tol in (0.5, 0.2, 0.05):
        tt = D.tt_svd(T, tol=tol)
        assert rel_err(tt.full(), T) <= tol * (1 + 1e-8)
    full = D.tt_svd(T)
    assert rel_err(full.full(), T) < 1e-10


@settings(max_examples=20)
@given(case=tt_cases, seed=st.integers(0, 10**6))
def test_tt_round_redundant_sum_property(case, seed):
    "X + X has TT ranks 2r as a block sum but true ranks r: rounding finds them."
    shape, ranks = case
    ranks = feasible_tt_ranks(shape, list(ranks))
    g = torch.Generator().manual_seed(seed)
    r = [1] + ranks + [1]
    cores = [torch.randn(r[k], n, r[k + 1], generator=g, dtype=torch.float64) for k, n in enumerate(shape)]
    X = Fmt.TTTensor(cores)
    # a second representation of the same tensor, after a random gauge change between the cores
    gauged = [c.clone() for c in cores]
    for k in range(len(shape) - 1):
        Q = torch.randn(r[k + 1], r[k + 1], generator=g, dtype=torch.float64) + 3 * torch.eye(r[k + 1],
                                                                                              dtype=torch.float64)
        gauged[k] = torch.einsum("aib,bc->aic", gauged[k], Q)
        gauged[k + 1] = torch.einsum("cb,bid->cid", torch.linalg.inv(Q), gauged[k + 1])
    Y = _sum_tt(X, Fmt.TTTensor(gauged))                               # the block TT of X + X
    assert_close(Y.full(), 2 * X.full(), rtol=1e-9, atol=1e-9)
    Z = D.tt_round(Y, tol=1e-10)
    assert tuple(Z.rank) == (1, *ranks, 1)
    assert rel_err(Z.full(), 2 * X.full()) < EXACT
    Z = D.tt_round(Y, rank=max(ranks))
    assert rel_err(Z.full(), 2 * X.full()) < EXACT


@pytest.mark.parametrize("dtype", DTYPES)
def test_tt_keeps_dtype(dtype, gen):
    T = torch.randn(3, 4, 5, generator=gen, dtype=dtype)
    tt = D.tt_svd(T, rank=2)
    assert tt.dtype == dtype and all(c.dtype == dtype for c in tt.cores)
    assert D.tt_round(tt, rank=1).full().dtype == dtype


# ---------------------------------------------------------------- hierarchical Tucker
def ht_tensor(shape, rank, g):
    d = len(shape)
    r = {(k, k + 1): min(rank, n) for k, n in enumerate(shape)}
    leaves = [torch.randn(n, r[(k, k + 1)], generator=g, dtype=torch.float64) for k, n in enumerate(shape)]
    transfers = {}
    for node, (a, b) in K.ht_tree(d).items():
        r[node] = 1 if node == (0, d) else rank
        transfers[node] = torch.randn(r[a], r[b], r[node], generator=g, dtype=torch.float64)
    return K.ht_full(leaves, transfers)


@settings(max_examples=20)
@given(shape=st.lists(st.integers(2, 4), min_size=2, max_size=5), rank=st.integers(1, 3),
       seed=st.integers(0, 10**6))
def test_ht_svd_recovers_exact_ht_property(shape, rank, seed):
    g = torch.Generator().manual_seed(seed)
    T = ht_tensor(shape, rank, g)
    ht = D.ht_svd(T, rank=rank)
    assert isinstance(ht, Fmt.HTTensor)
    assert all(r <= rank for r in ht.rank.values())
    assert rel_err(ht.full(), T) < EXACT
    ht = D.ht_svd(T, tol=1e-10)
    assert rel_err(ht.full(), T) < EXACT


@pytest.mark.parametrize("dtype", DTYPES)
def test_ht_keeps_dtype(dtype, gen):
    T = torch.randn(3, 4, 5, 2, generator=gen, dtype=dtype)
    ht = D.ht_svd(T, rank=2)
    assert ht.dtype == dtype and ht.full().dtype == dtype


# ---------------------------------------------------------------- accuracy guarantees of the SVD-based methods
@pytest.mark.parametrize("tol", [0.5, 0.2, 0.05])
def test_quasi_optimal_methods_meet_tol(tol, gen):
    "HOSVD, TT-SVD, TT rounding and HT-SVD with relative accuracy `tol` return an error <= tol * ||T||."
    T = torch.randn(4, 5, 6, 3, generator=gen, dtype=torch.float64)
    assert rel_err(D.hosvd(T, tol=tol).full(), T) <= tol * (1 + 1e-8)
    assert rel_err(D.ht_svd(T, tol=tol).full(), T) <= tol * (1 + 1e-8)
    X = D.tt_svd(T)                                            # exact (full-rank) TT, then round it
    assert rel_err(D.tt_round(X, tol=tol).full(), T) <= tol * (1 + 1e-8)


def test_truncation_ranks_shrink_with_tol(gen):
    T = torch.randn(4, 5, 6, 3, generator=gen, dtype=torch.float64)
    r_loose, r_tight = D.tt_svd(T, tol=0.5).rank, D.tt_svd(T, tol=0.05).rank
    assert all(a <= b for a, b in zip(r_loose, r_tight)) and r_loose != r_tight
    assert all(r <= 2 for r in D.tt_svd(T, rank=2).rank)
    assert all(r <= 2 for r in D.tt_round(D.tt_svd(T), rank=2).rank)


# ---------------------------------------------------------------- numerical trouble is reported, never silent NaN
def test_cp_als_oversized_rank_reports_singular_solves(gen):
    "Rank 3 on a rank-1 tensor: the normal equations are singular; the fit stays finite and says so."
    a, b, c = (torch.randn(n, generator=gen, dtype=torch.float64) for n in (4, 5, 6))
    T = torch.einsum("i,j,k->ijk", a, b, c)
    with pytest.warns(RuntimeWarning, match="singular"):
        cp, rec = D.cp_als(T, 3, n_iter=50, init="svd")
    assert "singular" in rec.message
    assert bool(torch.isfinite(cp.full()).all()) and rec.errors[-1] < 1e-6


def test_cp_zero_tensor():
    T = torch.zeros(3, 4, 5, dtype=torch.float64)
    for fit in (D.cp_als, D.nn_cp):
        cp, rec = fit(T, 2)
        assert rec.converged and bool(torch.isfinite(cp.full()).all()) and float(cp.full().abs().max()) == 0.0


def test_hooi_inits(gen):
    T = tucker_tensor((5, 6, 7), (2, 3, 2), gen)
    tk0, _ = D.hooi(T, (2, 3, 2), init="random", seed=0, n_iter=30)
    assert rel_err(tk0.full(), T) < EXACT
    tk1, _ = D.hooi(T, (2, 3, 2), init=D.hosvd(T, (2, 3, 2)), n_iter=2)
    assert rel_err(tk1.full(), T) < EXACT


def test_progress_bar_does_not_change_results(gen, capsys):
    T, _, _ = cp_tensor((4, 5, 6), 2, gen)
    a, ra = D.cp_als(T, 2, n_iter=5, init="svd", tol=0.0, progress=True)
    b, rb = D.cp_als(T, 2, n_iter=5, init="svd", tol=0.0)
    assert_close(a.full(), b.full(), rtol=1e-12, atol=1e-14)
    assert ra.errors == pytest.approx(rb.errors, rel=1e-10, abs=1e-14)


def test_cp_als_rank_above_mode_size(gen):
    "R > I_k: the SVD init is completed with random columns; the fit is finite and exact for an exact tensor."
    T, _, _ = cp_tensor((2, 5, 6), 3, gen)
    cp, rec = D.cp_als(T, 3, n_iter=500, tol=1e-14, init="svd", seed=0)
    assert bool(torch.isfinite(cp.full()).all())
    assert rec.errors[-1] < 1e-4


# ---------------------------------------------------------------- issue 9: defects and validation
def test_cp_als_does_not_converge_on_a_bit_identical_gram_estimate():
    """On main: converged=True at relative error 3.4e-7 on an exact rank-5 4x4x4 tensor, because two successive
    Gram-formula errors were bit-identical (below the formula's resolution); the exact residual keeps decreasing."""
    T = Fmt.random_cp((4, 4, 4), 5, seed=31, dtype=torch.float64).full()
    # seeded: rank 5 > 4 fills the SVD start with random columns, and some starts never reach the resolution limit
    cp, rec = D.cp_als(T, 5, line_search=False, residual="auto", tol=1e-14, n_iter=4000, seed=0)
    true_err = rel_err(cp.full(), T)
    assert not (rec.converged and true_err > 1e-9), (rec, true_err)
    assert abs(rec.final_error - true_err) < 1e-10
    assert rec.info.get("exact_residual_from", 0) > 0


def test_fit_records_follow_one_loop(gen):
    "cp_als, nn_cp and hooi share _FitLoop: same record fields and messages."
    T = Fmt.random_cp((5, 6, 7), 2, generator=gen, dtype=torch.float64).full().abs()
    for fit in (lambda: D.cp_als(T, 2, n_iter=3), lambda: D.nn_cp(T, 2, n_iter=3, seed=0), lambda: D.hooi(T, 2, n_iter=3)):
        _, rec = fit()
        assert isinstance(rec, D.FitRecord) and rec.n_iter == len(rec.errors) <= 3
        assert rec.message in ("converged", "stopped after n_iter=3 iterations")


def test_infeasible_tucker_ranks_are_one_rule():
    "On main: hooi(T, (64, 6, 6)) on 1797x8x8 returned ranks (36, 6, 6) 'converged'; an int rank above a mode was capped."
    T = torch.randn(1797, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^rank\[0\]: expected a rank <= 36"):
        D.hooi(T, (64, 6, 6), n_iter=2)
    with pytest.raises(ValueError, match=r"^rank\[0\]: expected a rank <= 36"):
        D.hosvd(T, (64, 6, 6))
    S = torch.randn(3, 4, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^rank: expected a rank <= 3 \(size of mode 0\)"):
        D.hosvd(S, 4)
    with pytest.raises(ValueError, match=r"^rank: expected a rank <= 3"):
        D.hooi(S, 4)
    assert D.hosvd(S, 3).rank == (3, 3, 3)


def test_tt_svd_warns_when_the_exact_tt_is_larger_than_the_tensor():
    "On main: tt_svd(T) returned ranks (1, n, n^2, n, 1) for a generic n^4 tensor without a word."
    T = torch.randn(12, 12, 12, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"tt_svd: with neither rank nor tol .* \(1, 12, 144, 12, 1\)"):
        tt = D.tt_svd(T)
    assert tt.n_params > T.numel()
    with pytest.warns(UserWarning, match=r"ht_svd: with neither rank nor tol"):
        D.ht_svd(T)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        D.tt_svd(T, rank=5); D.tt_svd(T, tol=0.5)                     # a bound or a tolerance: no warning
        D.tt_svd(Fmt.random_tt((12, 12, 12, 12), 2, seed=0, dtype=torch.float64).full())   # exact and compressed


def test_rank_is_the_tt_ht_bound_and_max_rank_is_deprecated():
    T = torch.randn(3, 4, 5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert D.tt_svd(T, rank=2).rank == (1, 2, 2, 2, 1) and D.tensor_train is D.tt_svd
    with pytest.warns(DeprecationWarning, match="max_rank= is deprecated"):
        assert D.tt_svd(T, max_rank=2).rank == (1, 2, 2, 2, 1)
    with pytest.warns(DeprecationWarning):
        assert max(D.ht_svd(T, max_rank=2).rank.values()) <= 2
    with pytest.raises(TypeError, match=r"^tt_svd: pass rank= only"):
        D.tt_svd(T, rank=2, max_rank=2)
    assert D.parafac is D.cp_als and D.non_negative_parafac is D.nn_cp and D.tucker is D.hooi


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.complex64])
def test_factorizations_refuse_half_and_complex_up_front(dtype):
    "On main nn_cp ran silently in half precision and the others failed deep inside torch.linalg."
    T = torch.rand(3, 4, 5).to(dtype)
    for f in (lambda: D.cp_als(T, 2), lambda: D.nn_cp(T, 2), lambda: D.hosvd(T, 2), lambda: D.hooi(T, 2),
              lambda: D.tt_svd(T, rank=2), lambda: D.ht_svd(T, rank=2)):
        with pytest.raises(TypeError, match=r"^T: expected (float32 or float64|a real)"):
            f()


def test_numpy_ranks_and_arrays_are_accepted():
    "On main np.int64(3) was rejected as a rank and NumPy arrays as data."
    import numpy as np
    X = Fmt.random_cp((4, 5, 6), 2, seed=0, dtype=torch.float64).full()
    r = np.int64(2)
    assert D.cp_als(X.numpy(), r, n_iter=3)[0].rank == 2
    assert D.nn_cp(X.abs().numpy(), r, n_iter=3, seed=0)[0].rank == 2
    assert D.hosvd(X.numpy(), r).rank == (2, 2, 2) and D.hooi(X.numpy(), (r, r, r), n_iter=2)[0].rank == (2, 2, 2)
    assert D.tt_svd(X.numpy(), rank=r).rank == (1, 2, 2, 1) and D.ht_svd(X.numpy(), rank=r).full().dtype == torch.float64
    assert D.cp_als(X.float().numpy(), 2, n_iter=2)[0].dtype == torch.float32


# ---------------------------------------------------------------- tensor rings: TR-SVD and TR-ALS
@settings(max_examples=25)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), rank=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_tr_svd_recovers_a_ring_exactly_at_full_rank(shape, rank, seed):
    "With neither rank nor tol (full rank: only round-off is cut), TR-SVD reproduces any ring, hence any tensor."
    g = torch.Generator().manual_seed(seed)
    T = Fmt.random_tr(shape, rank if len(shape) > 1 else 1, generator=g, dtype=torch.float64).full()
    with _no_check():
        rec = D.tr_svd(T)
    assert isinstance(rec, Fmt.TRTensor) and tuple(rec.shape) == tuple(shape) and rec.rank[0] == rec.rank[-1]
    assert rel_err(rec.full(), T) < EXACT or float(T.norm()) == 0.0


class _no_check:
    "Context manager that ignores the 'exact decomposition is larger' UserWarning."
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings(); self._w.__enter__(); warnings.simplefilter("ignore", UserWarning)
    def __exit__(self, *exc): self._w.__exit__(*exc)


def test_tr_svd_exact_with_a_sufficient_rank_cap_and_tensorly_oracle(gen):
    "A cap at the exact ring's largest rank changes nothing; TensorLy's TR-SVD with the same ranks is exact too."
    ring = Fmt.random_tr((4, 5, 4, 3), 2, generator=gen, dtype=torch.float64)
    T = ring.full()
    with _no_check():
        exact = D.tr_svd(T)
    rec = D.tr_svd(T, rank=max(exact.rank))
    assert rec.rank == exact.rank and rel_err(rec.full(), T) < EXACT
    assert max(D.tr_svd(T, rank=2).rank) <= 2 and rel_err(D.tr_svd(T, rank=2).full(), T) > 1e-3   # the cap can bite
    import tensorly as tl
    from tensorly.decomposition import tensor_ring
    with tl.backend_context("numpy"):
        tl_ring = tensor_ring(T.numpy(), rank=list(exact.rank))
        assert rel_err(torch.from_numpy(tl.tr_to_tensor(tl_ring)), T) < EXACT


@pytest.mark.parametrize("tol", [0.05, 0.2, 0.5])
def test_tr_svd_meets_tol_and_caps_ranks(tol, gen):
    T = torch.randn(4, 5, 4, 3, generator=gen, dtype=torch.float64)
    assert rel_err(D.tr_svd(T, tol=tol).full(), T) <= tol * (1 + 1e-8)
    assert max(D.tr_svd(T, rank=2).rank) <= 2
    loose, tight = D.tr_svd(T, tol=0.5), D.tr_svd(T, tol=0.05)
    assert loose.n_params <= tight.n_params


def test_tr_svd_warns_when_exact_ring_is_larger_and_max_rank_is_deprecated():
    T = torch.randn(6, 6, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"tr_svd: with neither rank nor tol"):
        D.tr_svd(T)
    with pytest.warns(DeprecationWarning):
        assert max(D.tr_svd(T, max_rank=2).rank) <= 2
    assert D.tensor_ring is D.tr_svd


def test_tr_als_is_monotone_and_recovers_an_exact_ring():
    ring = Fmt.random_tr((3, 4, 3, 2), (2, 2, 3, 2), seed=20, dtype=torch.float64)
    T = ring.full()
    best = math.inf
    for seed in range(3):
        fit, rec = D.tr_als(T, ring.rank, n_iter=150, seed=100 + seed)
        assert isinstance(fit, Fmt.TRTensor) and fit.rank == ring.rank and isinstance(rec, D.FitRecord)
        assert bool((torch.tensor(rec.errors).diff() <= 1e-10).all()) and rec.n_iter == len(rec.errors)
        assert_close(torch.tensor(rec.final_error, dtype=torch.float64), torch.tensor(rel_err(fit.full(), T), dtype=torch.float64),
                     rtol=1e-6, atol=1e-12)                                  # the recorded error is the true one
        best = min(best, rec.final_error)
    assert best < EXACT


def test_tr_als_init_seed_zero_tensor_and_dtype(gen):
    ring = Fmt.random_tr((3, 4, 3), 2, generator=gen, dtype=torch.float64)
    T = ring.full()
    a, _ = D.tr_als(T, 2, n_iter=3, seed=5)
    b, _ = D.tr_als(T, 2, n_iter=3, generator=torch.Generator().manual_seed(5))
    assert_close(a.full(), b.full(), rtol=1e-9, atol=1e-12)                 # same start (LAPACK round-off aside)
    fit, rec = D.tr_als(T, 2, init=ring, n_iter=5)
    assert rec.final_error < 1e-10 and rec.converged                          # started at the answer
    z, zr = D.tr_als(torch.zeros(3, 4, 3, dtype=torch.float64), 2)
    assert float(z.full().abs().max()) == 0.0 and zr.converged
    f32, _ = D.tr_als(T.float(), 2, n_iter=3, seed=0)
    assert f32.dtype == torch.float32 and D.tr_svd(T.float(), rank=2).dtype == torch.float32


@pytest.mark.parametrize("make, exc, words", [
    (lambda: D.tr_als(torch.randn(3, 3, 3), 0), ValueError, "rank"),
    (lambda: D.tr_als(torch.randn(3, 3, 3), (2, 2)), ValueError, "rank"),
    (lambda: D.tr_als(torch.randn(3), 2), ValueError, "T"),
    (lambda: D.tr_als(torch.randn(3, 3), 2, n_iter=0), ValueError, "n_iter"),
    (lambda: D.tr_als(torch.randn(3, 3), 2, init="svd"), ValueError, "init"),
    (lambda: D.tr_als(torch.randn(3, 3), 2, init=Fmt.random_tr((3, 4), 2)), ValueError, "init"),
    (lambda: D.tr_als(torch.randn(3, 3), 2, init=Fmt.random_tr((3, 3), 3)), ValueError, "init"),
    (lambda: D.tr_als(torch.full((3, 3), float("nan")), 2), ValueError, "T"),
    (lambda: D.tr_als(torch.randn(3, 3, dtype=torch.float64), 2, init=Fmt.random_tr((3, 3), 2)), TypeError, "init"),
    (lambda: D.tr_svd(torch.randn(3, 3), rank=0), ValueError, "rank"),
    (lambda: D.tr_svd(torch.randn(3, 3), rank=(2, 2)), TypeError, "rank"),
    (lambda: D.tr_svd(torch.tensor([[1.0, float("inf")]])), ValueError, "T"),
    (lambda: D.tr_svd(torch.randn(3, 3).half()), TypeError, "T"),
    (lambda: D.tr_svd(torch.randn(3, 3), tol=-1.0), ValueError, "tol"),
    (lambda: D.tr_svd("T"), TypeError, "T"),
])
def test_tr_bad_input_names_the_argument(make, exc, words):
    with pytest.raises(exc, match=rf"^{words}"):
        make()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tr_on_cuda():
    T = Fmt.random_tr((3, 4, 5), 2, seed=0, dtype=torch.float64, device="cuda").full()
    rec = D.tr_svd(T, rank=4)
    assert rec.device.type == "cuda" and rel_err(rec.full(), T) < EXACT
    fit, r = D.tr_als(T, 2, n_iter=50, seed=0)
    assert fit.device.type == "cuda" and bool((torch.tensor(r.errors).diff() <= 1e-10).all())
    assert_close(Fmt.inner(fit, T).cpu(), (fit.full() * T).sum().cpu())


# ---------------------------------------------------------------- issue 15: Gram route for wide unfoldings
def _noisy_tucker(shape, ranks, noise, seed):
    g = torch.Generator().manual_seed(seed)
    core = torch.randn(ranks, generator=g, dtype=torch.float64)
    Us = [torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64))[0] for n, r in zip(shape, ranks)]
    T = core
    for k, U in enumerate(Us):
        T = torch.movedim(torch.tensordot(U, T, dims=([1], [k])), 0, k)
    return T + noise * torch.randn(shape, generator=g, dtype=torch.float64) * T.norm() / math.prod(shape) ** 0.5


from tensornn.kernels import unfold  # noqa: E402


def test_hosvd_takes_the_gram_route_on_noisy_wide_unfoldings(monkeypatch):
    T = _noisy_tucker((12, 30, 40), (3, 4, 5), 1e-3, 0)
    ref = [torch.linalg.svd(unfold(T, k), full_matrices=False)[0][:, :r] for k, r in enumerate((3, 4, 5))]
    def no_svd(*a, **k): raise AssertionError("full SVD called")
    monkeypatch.setattr(torch.linalg, "svd", no_svd)
    tk = D.hosvd(T, (3, 4, 5))
    monkeypatch.undo()
    for U, V in zip(tk.factors, ref):
        assert float(torch.linalg.matrix_norm(U @ U.mT - V @ V.mT, ord=2)) < 1e-9


def test_gram_route_keeps_svd_accuracy_on_exactly_low_rank_data():
    # an exactly rank-(2, 2, 2) tensor whose second singular values are 1e-6 of the first: the Gram route would lose
    # about eight digits of the subspace, so the rule must fall back to the SVD and stay exact
    g = torch.Generator().manual_seed(1)
    core = torch.diag_embed(torch.tensor([1.0, 1e-6], dtype=torch.float64)).unsqueeze(-1) * torch.tensor([1.0, 1e-6], dtype=torch.float64)
    Us = [torch.linalg.qr(torch.randn(n, 2, generator=g, dtype=torch.float64))[0] for n in (10, 60, 70)]
    T = torch.einsum("abc,ia,jb,kc->ijk", core, *Us)
    tk = D.hosvd(T, 2)
    assert float((tk.full() - T).norm() / T.norm()) < 1e-13
    tt = D.tt_svd(T, rank=2)
    assert float((tt.full() - T).norm() / T.norm()) < 1e-13


@pytest.mark.parametrize("tol", [1e-2, 1e-4, 1e-8])
def test_tt_svd_gram_route_meets_tol_and_matches_svd_ranks(tol):
    T = _noisy_tucker((8, 9, 10, 11), (3, 3, 3, 3), 1e-3, 2)
    tt = D.tt_svd(T, tol=tol)
    assert float((tt.full() - T).norm() / T.norm()) <= tol * (1 + 1e-6)
    # the same truncation done with full SVDs at every step gives the same ranks
    ref = D._svd_truncate
    shape, C, r_prev, ranks = T.shape, T, 1, []
    delta2 = tol ** 2 * float((T * T).sum()) / 3
    for k in range(3):
        U, S, Vh = ref(C.reshape(r_prev * shape[k], -1), delta2, None)
        ranks.append(U.shape[1]); C, r_prev = S[:, None] * Vh, U.shape[1]
    assert list(tt.rank[1:-1]) == ranks


# ---------------------------------------------------------------- issue 15: TT rounding through Gram matrices
def _graded_tt(shape, rank, decay, seed, dtype=torch.float64):
    "A TT of orthonormal cores, each scaled by 1, decay, decay^2, ... on its right bond (a decaying spectrum at the bonds), in a random gauge."
    g = torch.Generator().manual_seed(seed)
    d, cores = len(shape), []
    sig = torch.tensor([decay ** i for i in range(rank)], dtype=torch.float64)
    r = [1] + [rank] * (d - 1) + [1]
    for k, n in enumerate(shape):
        Q = torch.linalg.qr(torch.randn(r[k] * n, r[k + 1], generator=g, dtype=torch.float64))[0]
        cores.append(Q.reshape(r[k], n, r[k + 1]) * (sig if k < d - 1 else 1.0))
    for k in range(d - 1):                                          # a random invertible gauge between the cores
        A = torch.randn(r[k + 1], r[k + 1], generator=g, dtype=torch.float64) + 3 * torch.eye(r[k + 1], dtype=torch.float64)
        cores[k] = torch.einsum("aib,bc->aic", cores[k], A)
        cores[k + 1] = torch.einsum("cb,bid->cid", torch.linalg.inv(A), cores[k + 1])
    return Fmt.TTTensor([c.to(dtype) for c in cores])


def _svd_rounding(tt, rank=None, tol=None):
    "Textbook TT rounding, a full SVD at every cut, in float64: the reference for tt_round."
    cores = Fmt.tt_orthogonalize_right([c.double() for c in tt.cores])
    d = len(cores)
    delta2 = None if tol is None else tol ** 2 * float(cores[0].pow(2).sum()) / (d - 1)
    for k in range(d - 1):
        r0, n, r1 = cores[k].shape
        U, S, Vh = torch.linalg.svd(cores[k].reshape(r0 * n, r1), full_matrices=False)
        if delta2 is None:
            r = int((S > torch.finfo(torch.float64).eps * max(r0 * n, r1) * S[0]).sum())
        else:
            tails = [float(S[i:].pow(2).sum()) for i in range(len(S))] + [0.0]
            r = next(i for i, t in enumerate(tails) if t <= delta2)
        r = max(min(r, rank or r), 1)
        cores[k] = U[:, :r].reshape(r0, n, r)
        cores[k + 1] = ((S[:r, None] * Vh[:r]) @ cores[k + 1].reshape(r1, -1)).reshape(r, *cores[k + 1].shape[1:])
    return Fmt.TTTensor(cores)


def _sum_tt(x, y):
    "The block TT of x + y (ranks add)."
    d, out = len(x.cores), []
    for k, (A, B) in enumerate(zip(x.cores, y.cores)):
        if k == 0: out.append(torch.cat([A, B], dim=2))
        elif k == d - 1: out.append(torch.cat([A, B], dim=0))
        else: out.append(_block_core(A, B))
    return Fmt.TTTensor(out)


def _block_core(A, B):
    Z = A.new_zeros(A.shape[0] + B.shape[0], A.shape[1], A.shape[2] + B.shape[2])
    Z[:A.shape[0], :, :A.shape[2]], Z[A.shape[0]:, :, A.shape[2]:] = A, B
    return Z


def _tt_distance(a, b):
    "||a - b|| in float64 from the TT of the difference (no cancellation of ||a||^2 - 2<a, b> + ||b||^2)."
    a, b = (Fmt.TTTensor([c.double() for c in t.cores]) for t in (a, b))
    minus_b = Fmt.TTTensor([-b.cores[0]] + b.cores[1:])
    return float(_sum_tt(a, minus_b).norm())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("decay", [0.8, 0.3])          # kept values mostly within a factor 10 (division), or not (QR)
def test_tt_round_through_grams_equals_svd_rounding(dtype, decay, monkeypatch):
    x = _graded_tt((8,) * 7, 6, decay, seed=1, dtype=dtype)
    y = _graded_tt((8,) * 7, 6, 0.9, seed=2, dtype=dtype)
    y.cores[0] = 1e-3 * y.cores[0]                                   # x plus a small TT: stored ranks 12, kept 6
    big = _sum_tt(x, y)
    svds = []
    real_svd = torch.linalg.svd
    monkeypatch.setattr(torch.linalg, "svd", lambda *a, **k: svds.append(a[0].shape) or real_svd(*a, **k))
    out = D.tt_round(big, rank=6)
    monkeypatch.undo()
    assert all(s[0] < 4 * s[1] for s in svds), svds                 # every tall step took the Gram route
    assert out.rank == (1,) + (6,) * 6 + (1,) and out.dtype == dtype
    ref = _svd_rounding(big, rank=6)
    eps = torch.finfo(dtype).eps
    scale = float(ref.norm())
    assert _tt_distance(out, ref) <= 1e3 * eps ** 0.5 * scale if dtype == torch.float32 else 1e-11 * scale
    for c in out.cores[:-1]:                                         # left-orthonormal cores, to working precision
        M = c.reshape(-1, c.shape[2])
        assert float((M.mT @ M - torch.eye(M.shape[1], dtype=dtype)).abs().max()) < 200 * M.shape[1] * eps


@pytest.mark.parametrize("tol", [0.3, 1e-2, 1e-4, 1e-9])
def test_tt_round_through_grams_meets_tol_with_the_svd_ranks(tol):
    x = _graded_tt((8,) * 6, 8, 0.4, seed=3)
    noise = _graded_tt((8,) * 6, 4, 0.9, seed=4)
    noise.cores[0] = 1e-5 * noise.cores[0]
    big = _sum_tt(x, noise)
    out, ref = D.tt_round(big, tol=tol), _svd_rounding(big, tol=tol)
    assert out.rank == ref.rank
    assert _tt_distance(out, big) <= tol * float(big.norm()) * (1 + 1e-6)


@pytest.mark.parametrize("decay", [1e-5, 1e-6])
def test_tt_round_falls_back_to_the_svd_where_grams_lose_digits(decay):
    "Exact TT ranks 3 with values 1, decay, decay^2 at the bonds, stored as 4x with rank 12: the Gram route alone loses the"
    " third direction (a relative error of 1e-11 and a rank of 2), so the rule must send those steps to the SVD."
    x = _graded_tt((40,) * 5, 3, decay, seed=5)
    big = _sum_tt(_sum_tt(x, x), _sum_tt(x, x))
    out = D.tt_round(big)
    assert out.rank == (1, 3, 3, 3, 3, 1)
    assert _tt_distance(out, big) < 1e-13 * float(big.norm())



@pytest.mark.parametrize("decay", [0.8, 0.2])           # the division branch, and the QR branch
def test_tt_round_through_grams_is_differentiable(decay, monkeypatch):
    "The Gram route keeps the graph: the gradient of the rounded tensor (three random projections of it) with respect"
    " to a core that passes through two Gram steps matches finite differences."
    cores = _graded_tt((8,) * 4, 4, decay, seed=7).cores
    svds = []
    real_svd = torch.linalg.svd
    monkeypatch.setattr(torch.linalg, "svd", lambda *a, **k: svds.append(a[0].shape) or real_svd(*a, **k))
    P = torch.randn(8 ** 4, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    round_full = lambda G1: D.tt_round(Fmt.TTTensor([cores[0], G1, *cores[2:]]), rank=3).full().reshape(-1) @ P
    assert torch.autograd.gradcheck(round_full, (cores[1].clone().requires_grad_(),), eps=1e-6, atol=1e-6, rtol=1e-4)
    assert svds and all(s[0] < 4 * s[1] for s in svds), svds        # the tall steps took the Gram route

def test_gram_truncation_branches():
    g = torch.Generator().manual_seed(6)
    Qa = torch.linalg.qr(torch.randn(200, 10, generator=g, dtype=torch.float64))[0]
    Qb = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))[0]
    for sig in ([1.0, 0.5, 0.2, 0.15] + [1e-4] * 6, [1.0, 0.1, 1e-2, 1e-3] + [1e-6] * 6):
        M = (Qa * torch.tensor(sig, dtype=torch.float64)) @ Qb.mT
        qr_calls = []
        real_qr = torch.linalg.qr
        torch.linalg.qr = lambda A, *a, **k: qr_calls.append(A.shape) or real_qr(A, *a, **k)
        try: U, W = D._gram_truncate_tall(M, None, 4)
        finally: torch.linalg.qr = real_qr
        assert len(qr_calls) == (0 if sig[1] == 0.5 else 1)             # QR only when sigma_1 / sigma_4 > 10
        assert_close(U.mT @ U, torch.eye(4, dtype=torch.float64), atol=1e-14, rtol=0)
        P = Qb[:, :4]
        assert_close(U @ W, M @ P @ P.mT, atol=1e-13, rtol=0)
    assert D._gram_truncate_tall(torch.zeros(40, 5, dtype=torch.float64), None, 2) is None    # zero: the SVD decides
    U, W = D._truncated_factors(torch.zeros(40, 5, dtype=torch.float64), None, 2)
    assert U.shape == (40, 1) and float(W.abs().max()) == 0.0

# ---------------------------------------------------------------- issue 15: batched CP-ALS
@pytest.mark.parametrize("shape,rank", [((6, 7, 8), 3), ((4, 5, 3, 6), 2), ((5, 5), 2), ((3, 4, 5), 6)])
def test_cp_als_batched_recovers_every_member(shape, rank):
    g = torch.Generator().manual_seed(7)
    batch = torch.stack([Fmt.random_cp(shape, min(rank, min(shape)), generator=g, dtype=torch.float64).full() for _ in range(12)])
    fits, rec = D.cp_als_batched(batch, rank, n_iter=500, tol=1e-14, seed=0)
    assert len(fits) == 12 and rec.n_iter <= 500
    # rank 6 > every mode size: over-factored ALS swamps on a few members (cp_als alone, without line search, stops
    # at 4e-3 on one of them after 500 sweeps), so there half the members must be exact and none far off
    worst = 1e-6 if rank <= min(shape) else 1e-2
    errors = [rel_err(x.full(), batch[b]) for b, x in enumerate(fits)]
    for b, x in enumerate(fits):
        assert tuple(x.shape) == shape and x.rank == rank
        assert errors[b] < worst
        assert abs(rec.info["errors"][b] - errors[b]) < 1e-12 + 1e-6 * errors[b]     # two roundings of one residual
    assert sorted(errors)[5] < 1e-6                                                  # at least half exact


@pytest.mark.parametrize("shape", [(16, 16, 16), (8, 8, 8, 8), (6, 4, 32, 6)])
def test_batched_decompositions_make_no_temporary_near_the_size_of_the_batch(shape):
    "Unfoldings are views, Grams and residuals come in blocks: at rank <= half the end modes' sizes, no temporary exceeds half of T."
    T = torch.randn((600,) + shape, generator=torch.Generator().manual_seed(8))           # 2.5M-2.8M entries
    for name, call in (("cp_als_batched", lambda: D.cp_als_batched(T, 3, n_iter=2, tol=0.0)),
                       ("hosvd_batched", lambda: D.hosvd_batched(T, 3)), ("tt_svd_batched", lambda: D.tt_svd_batched(T, rank=3))):
        with LargestResult() as seen:
            call()
        assert seen.largest <= T.numel() // 2, (name, seen.largest, T.numel())
    with LargestResult() as seen:
        T.movedim(2, 1).reshape(600, shape[1], -1)                                       # it sees a copy of T
    assert seen.largest == T.numel()


@pytest.mark.parametrize("name", ["cp_als", "hosvd", "hooi", "tt_svd", "ht_svd"])
def test_single_tensor_decompositions_make_no_copy_of_a_large_tensor(name):
    "Starts and SVD steps go through blocked Gram matrices of the modes: no unfolding of T is formed (issue 15)."
    T = torch.randn(150, 150, 150, generator=torch.Generator().manual_seed(9))           # 3.4M entries, above the blocks
    call = {"cp_als": lambda: D.cp_als(T, 10, n_iter=1), "hosvd": lambda: D.hosvd(T, 10),
            "hooi": lambda: D.hooi(T, 10, n_iter=1), "tt_svd": lambda: D.tt_svd(T, rank=10),
            "ht_svd": lambda: D.ht_svd(T, rank=10)}[name]
    with LargestResult() as seen:
        call()
    assert seen.largest <= T.numel() // 2, (seen.largest, T.numel())


def test_cp_als_batched_matches_cp_als_member_by_member():
    g = torch.Generator().manual_seed(11)
    batch = torch.stack([Fmt.random_cp((7, 8, 9), 4, generator=g, dtype=torch.float64).full() for _ in range(6)])
    batch = batch + 0.05 * torch.randn(batch.shape, generator=g, dtype=torch.float64)
    fits, rec = D.cp_als_batched(batch, 4, n_iter=400, tol=1e-13)
    for b in range(6):
        _, r = D.cp_als(batch[b], 4, n_iter=400, tol=1e-13, line_search=False)
        assert rec.info["errors"][b] <= r.errors[-1] * (1 + 1e-4) + 1e-12    # the same ALS, run in lock step


def test_cp_als_batched_float32_zero_member_and_monotone_errors():
    g = torch.Generator().manual_seed(2)
    batch = torch.stack([Fmt.random_cp((5, 6, 7), 2, generator=g).full() for _ in range(5)])
    batch[2] = 0
    fits, rec = D.cp_als_batched(batch, 2, n_iter=100, tol=1e-7)
    assert fits[0].weights.dtype == torch.float32 and rec.info["errors"][2] == 0.0
    assert float(fits[2].full().abs().max()) == 0.0
    assert all(e2 <= e1 + 1e-3 for e1, e2 in zip(rec.errors, rec.errors[1:]))     # Gram-formula noise in float32: ~10 sqrt(eps)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cp_als_batched_on_cuda():
    g = torch.Generator().manual_seed(0)
    batch = torch.stack([Fmt.random_cp((6, 7, 8), 3, generator=g, dtype=torch.float64).full() for _ in range(32)]).cuda()
    fits, rec = D.cp_als_batched(batch, 3, n_iter=300, tol=1e-13)
    assert fits[0].weights.device.type == "cuda" and max(rec.info["errors"]) < 1e-6


# ---------------------------------------------------------------- issue 15: HOOI by a dimension tree
def _hooi_mode_by_mode(T, factors, ranks, sweeps):
    "The textbook HOOI order: every mode from the full tensor contracted with all other current factors."
    factors = list(factors)
    for _ in range(sweeps):
        for n in range(T.ndim):
            Y = torch.einsum(T, list(range(T.ndim)), *[a for k, U in enumerate(factors) if k != n
                                                        for a in (U, [k, T.ndim + k])],
                             [n] + [T.ndim + k for k in range(T.ndim) if k != n])
            factors[n] = torch.linalg.svd(Y.reshape(T.shape[n], -1), full_matrices=False)[0][:, :ranks[n]]
    return factors


@pytest.mark.parametrize("shape,ranks", [((6, 7, 8), (2, 3, 2)), ((5, 6, 4, 7), (2, 2, 3, 2)),
                                         ((4, 5, 3, 4, 5), (2, 2, 2, 2, 3)), ((9, 8), (3, 3))])
def test_hooi_tree_sweep_equals_mode_by_mode(shape, ranks):
    T = _noisy_tucker(shape, ranks, 0.3, 4)
    start = D.hosvd(T, ranks)
    fit, rec = D.hooi(T, ranks, n_iter=3, tol=0.0, init=start)
    ref = _hooi_mode_by_mode(T, start.factors, ranks, rec.n_iter)
    for U, V in zip(fit.factors, ref):
        assert_close(U @ U.mT, V @ V.mT, atol=1e-9, rtol=0)                         # same subspaces
    assert abs(rec.final_error - rel_err(fit.full(), T)) < 1e-10


def test_mode_dot_is_contiguous_and_order_free():
    g = torch.Generator().manual_seed(5)
    T = torch.randn(4, 5, 6, 7, generator=g, dtype=torch.float64)
    mats = [torch.randn(n, r, generator=g, dtype=torch.float64) for n, r in zip(T.shape, (2, 9, 3, 7))]
    ref = torch.einsum("abcd,ai,bj,ck,dl->ijkl", T, *mats)
    assert_close(K.multi_mode_dot(T, mats, transpose=True), ref)
    for k in range(4):
        out = K.mode_dot(T, mats[k], k, transpose=True)
        assert out.is_contiguous() and out.shape[k] == mats[k].shape[1]
        assert_close(K.mode_dot(T.permute(3, 2, 1, 0), mats[k].mT, 3 - k), out.permute(3, 2, 1, 0))   # strided input


# ---------------------------------------------------------------- issue 15: batched HOSVD and TT-SVD
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_hosvd_and_tt_svd_match_single(dtype):
    g = torch.Generator().manual_seed(3)
    batch = torch.randn(9, 5, 6, 7, 4, generator=g, dtype=torch.float64)
    batch[2] = 0
    batch[5] = Fmt.random_tucker((5, 6, 7, 4), 2, generator=g, dtype=torch.float64).full()
    batch[6] = 1e-30 * batch[6]                                                        # tiny but not zero
    batch = batch.to(dtype)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    for b, (h, t) in enumerate(zip(D.hosvd_batched(batch, (2, 3, 3, 2)), D.tt_svd_batched(batch, rank=(3, 4, 2)))):
        assert h.rank == (2, 3, 3, 2) and t.rank == (1, 3, 4, 2, 1) and h.dtype == t.dtype == dtype
        scale = float(batch[b].norm()) or 1.0
        assert_close(h.full() / scale, D.hosvd(batch[b], (2, 3, 3, 2)).full() / scale, atol=tol, rtol=0)
        assert_close(t.full() / scale, D.tt_svd(batch[b], rank=(3, 4, 2)).full() / scale, atol=tol, rtol=0)
        for U in h.factors: assert_close(U.mT @ U, torch.eye(U.shape[1], dtype=dtype), atol=tol, rtol=0)


def test_batched_gram_route_falls_back_where_inaccurate():
    "A member of exactly low rank, asked for more vectors than its rank, must not take the Gram route (its extra vectors"
    " would be rounding noise): the batched result keeps SVD accuracy on it."
    g = torch.Generator().manual_seed(8)
    M = torch.randn(4, 6, 60, generator=g, dtype=torch.float32)
    M[1] = torch.randn(6, 2, generator=g) @ torch.randn(2, 60, generator=g)
    lam = torch.linalg.eigvalsh(M @ M.mT).flip(-1)
    ok = D._gram_is_accurate(lam, 4, torch.finfo(torch.float32).eps, None)
    assert ok.tolist() == [True, False, True, True]
    U = D._batched_leading_vectors(M, 4)
    resid = M[1] - U[1] @ (U[1].mT @ M[1])
    assert float(resid.norm() / M[1].norm()) < 1e-6


def test_batched_tt_svd_caps_ranks_by_the_shape():
    batch = torch.randn(3, 2, 3, 4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    tts = D.tt_svd_batched(batch, rank=10)
    assert tts[0].rank == (1, 2, 6, 2, 1)
    for b in range(3): assert_close(tts[b].full(), batch[b])


# ---------------------------------------------------------------- issue 15: vmap and torch.compile
def test_fixed_rank_hosvd_and_tt_svd_trace_under_vmap_and_compile():
    "Validation and the route choice read no values while tracing, so fixed-rank HOSVD and TT-SVD vmap and compile."
    g = torch.Generator().manual_seed(4)
    batch = torch.randn(5, 4, 6, 30, generator=g, dtype=torch.float64)
    hv = torch.func.vmap(lambda T: D.hosvd(T, 2).full())(batch)
    tv = torch.func.vmap(lambda T: D.tt_svd(T, rank=2).full())(batch)
    for b in range(5):
        assert_close(hv[b], D.hosvd(batch[b], 2).full(), atol=1e-12, rtol=0)
        assert_close(tv[b], D.tt_svd(batch[b], rank=2).full(), atol=1e-12, rtol=0)
    torch._dynamo.reset()
    compiled = torch.compile(lambda T: D.hosvd(T, 2).full(), fullgraph=True, backend="eager")
    assert_close(compiled(batch[0]), D.hosvd(batch[0], 2).full(), atol=1e-12, rtol=0)
    bad = batch.clone(); bad[1, 0, 0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="Batch element 1"):                            # LAPACK refuses it under vmap
        torch.func.vmap(lambda T: D.hosvd(T, 2).core)(bad)
    with pytest.raises(ValueError, match="^T: expected finite"):
        D.hosvd(bad[1], 2)                                                                 # refused outside it


_READS_VALUES = {                                   # calls whose control flow reads T, and what the error points to
    "cp_als": (lambda T: D.cp_als(T, 2, n_iter=3)[0].full(), "cp_als_batched"),
    "nn_cp": (lambda T: D.nn_cp(T.abs(), 2, n_iter=3)[0].full(), "one by one"),
    "hooi": (lambda T: D.hooi(T, 2, n_iter=3)[0].full(), "hosvd_batched"),
    "tr_als": (lambda T: D.tr_als(T, 2, n_iter=3)[0].full(), "one by one"),
    "hosvd": (lambda T: D.hosvd(T, tol=0.5).full(), "hosvd_batched"),
    "tt_svd": (lambda T: D.tt_svd(T, tol=0.5).full(), "tt_svd_batched"),
    "ht_svd": (lambda T: D.ht_svd(T, tol=0.5).full(), "fixed rank"),
    "tr_svd": (lambda T: D.tr_svd(T, tol=0.5).full(), "fixed rank"),
}


@pytest.mark.parametrize("name", sorted(_READS_VALUES))
def test_value_reading_algorithms_refuse_vmap_by_name_and_still_run_outside_it(name):
    "Under vmap the error names the algorithm and the way out; under grad, and outside transforms, the same call runs."
    call, hint = _READS_VALUES[name]
    batch = torch.randn(3, 4, 5, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with pytest.raises(RuntimeError, match=f"^{name}: .*which torch.func.vmap cannot run") as caught:
        torch.func.vmap(call)(batch)
    assert hint in str(caught.value)
    nested = torch.func.vmap(torch.func.grad(lambda T: call(T).sum()))             # batched below a grad wrapper
    with pytest.raises(RuntimeError, match=f"^{name}: "):
        nested(batch)
    assert call(batch[0]).shape == (4, 5, 6)


def test_fixed_rank_svd_formats_still_run_under_vmap():
    "The refusal is for tol-chosen ranks only: with a fixed rank, HT-SVD and TR-SVD vmap as HOSVD and TT-SVD do."
    batch = torch.randn(3, 4, 5, 6, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    for f in (lambda T: D.ht_svd(T, rank=2).full(), lambda T: D.tr_svd(T, rank=2).full()):
        out = torch.func.vmap(f)(batch)
        for b in range(3): assert_close(out[b], f(batch[b]), atol=1e-12, rtol=0)


@pytest.mark.parametrize("shape", [(30, 20, 10), (10, 20, 30), (5, 6, 7, 8)])
def test_cp_residual_norm_in_blocks_matches_the_dense_residual(shape):
    g = torch.Generator().manual_seed(2)
    F = [torch.randn(n, 4, generator=g, dtype=torch.float64) for n in shape]
    T = torch.randn(shape, generator=g, dtype=torch.float64)
    ref = float((T - K.cp_full(torch.ones(4, dtype=torch.float64), F)).norm())
    for block in (1, 7, 100, 1 << 20):                 # one row per block, ragged blocks, one block
        assert abs(float(K.cp_residual_norm(T, F, block=block)) - ref) < 1e-12 * ref


@pytest.mark.parametrize("d", [2, 3, 4])
def test_finish_cp_batch_matches_finish_cp_member_by_member(d, gen):
    factors = [torch.randn(5, 3 + k, 4, generator=gen, dtype=torch.float64) for k in range(d)]
    factors[0][2, :, 1] = 0                                        # a zero column: weight 0, column kept as is
    out = D._finish_cp_batch(factors)
    assert len(out) == 5
    for b, x in enumerate(out):
        one = D._finish_cp([A[b] for A in factors])
        assert_close(x.weights, one.weights)
        assert bool((x.weights[:-1] >= x.weights[1:]).all())      # decreasing
        for U, V in zip(x.factors, one.factors): assert_close(U, V)
        assert_close(x.full(), Fmt.CPTensor(torch.ones(4, dtype=torch.float64), [A[b] for A in factors]).full())
