"""Tests for tensornn.implicit: gradient descent on matrix, CP and hierarchical tensor factorizations for completion,
the rank readouts, and the component-norm dynamics."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, strategies as st

from tensornn.compression import effective_rank
from tensornn.formats import CPTensor, HTTensor
from tensornn.kernels import ht_full
from tensornn.implicit import (CompletionRecord, MatrixFactorization, NormDynamics, component_norms, factorized_completion,
                               gradient_change_penalty,
                               hierarchical_rank, norm_dynamics, numerical_cp_rank)
from tensornn.testing import assert_close

CUDA = torch.cuda.is_available()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _cp_target(shape, rank, seed=0, dtype=torch.float64):
    g = _gen(seed)
    return CPTensor(None, [torch.randn(n, rank, generator=g, dtype=dtype) for n in shape]).full()


def _observe(T, n_obs, seed=0):
    idx = torch.cartesian_prod(*[torch.arange(n) for n in T.shape])
    idx = idx[torch.randperm(len(idx), generator=_gen(seed))[:n_obs]]
    return idx, T[tuple(idx.T)]


TWO_BY_TWO = (torch.tensor([[0, 1], [1, 0], [1, 1]]), torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))


# ---------------------------------------------------------------- the fit: loss decreases, formats, dtype, seeds
@pytest.mark.parametrize("model, kw", [("matrix", dict(depth=3, init_scale=0.3, lr=0.05)),
                                       ("cp", dict(rank=8, init_scale=0.5, lr=0.05)),
                                       ("ht", dict(rank=6, init_scale=0.5, lr=0.05))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_loss_decreases_for_every_model(model, kw, dtype):
    shape = (5, 6) if model == "matrix" else (4, 4, 4)
    T = _cp_target(shape, 2, seed=1, dtype=dtype)
    T = T / T.norm() * math.sqrt(T.numel())                          # entries of order one
    idx, val = _observe(T, T.numel() // 2, seed=1)
    x, rec = factorized_completion(idx, val, shape, model=model, steps=400, record_every=20, seed=0, **kw)
    assert isinstance(rec, CompletionRecord) and rec.model == model and rec.n_iter == 400
    assert rec.loss.dtype == dtype and x.full().dtype == dtype and tuple(x.full().shape) == shape
    assert rec.loss[-1] < 0.5 * rec.loss[0]
    assert bool((rec.loss[1:] <= rec.loss[:-1] * (1 + 1e-5)).all())            # monotone for small steps
    assert rec.steps.tolist() == list(range(0, 401, 20))
    expected = {"matrix": MatrixFactorization, "cp": CPTensor, "ht": HTTensor}[model]
    assert isinstance(x, expected)
    # the model's entries at the observations give the recorded loss
    res = x.full()[tuple(idx.T)] - val
    assert_close(0.5 * (res * res).mean(), rec.loss[-1], rtol=1e-4, atol=0)


def test_reproducible_from_seed_and_generator():
    T = _cp_target((4, 4, 4), 2)
    idx, val = _observe(T, 30)
    a, ra = factorized_completion(idx, val, T.shape, model="cp", rank=5, steps=50, seed=3)
    b, rb = factorized_completion(idx, val, T.shape, model="cp", rank=5, steps=50, seed=3)
    c, _ = factorized_completion(idx, val, T.shape, model="cp", rank=5, steps=50, generator=torch.Generator().manual_seed(3))
    d, _ = factorized_completion(idx, val, T.shape, model="cp", rank=5, steps=50, seed=4)
    assert torch.equal(a.full(), b.full()) and torch.equal(ra.loss, rb.loss) and torch.equal(a.full(), c.full())
    assert not torch.equal(a.full(), d.full())


def test_adaptive_follows_gradient_direction_and_time():
    "The adaptive scheme scales the whole gradient by one number: its first step is lr times the unit gradient."
    idx, val = TWO_BY_TWO
    _, r1 = factorized_completion(idx, val, (2, 2), depth=2, init_scale=0.5, lr=1e-3, steps=1, optimizer="adaptive",
                                  record_every=1, keep_models=True, seed=0)
    _, r2 = factorized_completion(idx, val, (2, 2), depth=2, init_scale=0.5, lr=1e-3, steps=1, record_every=1,
                                  keep_models=True, seed=0)
    step_a = [B - A for A, B in zip(r1.models[0].factors, r1.models[1].factors)]
    step_g = [B - A for A, B in zip(r2.models[0].factors, r2.models[1].factors)]
    na = torch.cat([s.reshape(-1) for s in step_a]); ng = torch.cat([s.reshape(-1) for s in step_g])
    assert_close(na.norm(), torch.tensor(1e-3, dtype=torch.float64), rtol=1e-6, atol=0)
    assert_close(na / na.norm(), ng / ng.norm())
    assert_close(r1.time[1], na.norm() / ng.norm() * 1e-3 * 1e3 * r2.time[1], rtol=1e-6, atol=0)


def test_loss_tol_stops_early_and_divergence_is_reported():
    idx, val = TWO_BY_TWO
    _, rec = factorized_completion(idx, val, (2, 2), depth=2, init_scale=0.5, lr=0.1, steps=5000, loss_tol=1e-6, seed=0)
    assert rec.converged and rec.n_iter < 5000 and float(rec.loss[-1]) <= 1e-6
    with pytest.warns(UserWarning, match="not finite"):
        x, rec = factorized_completion(idx, 1e3 * val, (2, 2), depth=3, init_scale=1.0, lr=10.0, steps=200, seed=0)
    assert bool(torch.isfinite(x.full()).all()) and not rec.converged and "not finite" in rec.message


def test_non_finite_start_is_an_error_not_nan():
    T = _cp_target((6, 6, 6), 2)
    idx, val = _observe(T, 40)
    with pytest.raises(ValueError, match="init_scale"):
        factorized_completion(idx, val, T.shape, model="cp", rank=4, init_scale=1e120, steps=5, seed=0)


# ---------------------------------------------------------------- the papers' claims, small
def test_two_by_two_unobserved_entry_and_nuclear_norm_grow_while_loss_falls():
    "Razin & Cohen (2020): depth 3, small steps, positive determinant: |W11| and every norm grow as the loss falls."
    idx, val = TWO_BY_TWO
    seed = next(s for s in range(50) if torch.linalg.det(factorized_completion(
        idx, val, (2, 2), depth=3, init_scale=0.1, steps=0, balanced=True, seed=s)[0].full()) > 0)
    _, rec = factorized_completion(idx, val, (2, 2), depth=3, init_scale=0.1, lr=0.02, steps=12000, balanced=True,
                                   record_every=400, keep_models=True, seed=seed)
    W = torch.stack([m.full() for m in rec.models])
    nuclear = torch.linalg.matrix_norm(W, "nuc")
    late = rec.loss < 0.1 * rec.loss[0]                                      # once the observations are being fit
    assert int(late.sum()) >= 10
    assert bool((rec.loss[1:] < rec.loss[:-1]).all())
    assert bool((W[late, 0, 0].abs().diff() > 0).all()) and bool((nuclear[late].diff() > 0).all())
    assert float(W[-1, 0, 0].abs()) > 5 and float(effective_rank(W[-1])) < 1.01


def test_small_init_cp_completion_learns_exactly_two_components():
    T = _cp_target((5, 5, 5), 2, seed=2)
    T = T / T.norm() * 5
    idx, val = _observe(T, 70, seed=2)
    x, rec = factorized_completion(idx, val, T.shape, model="cp", rank=20, init_scale=1e-3, lr=3e-3, steps=6000,
                                   optimizer="adaptive", record_every=100, seed=0)
    norms = component_norms(x)
    assert int((norms > 0.05 * norms.max()).sum()) == 2
    assert float((x.full() - T).norm() / T.norm()) < 0.05                  # zero fill: about 0.66
    assert numerical_cp_rank(x.full(), tol=5e-2) == 2


# ---------------------------------------------------------------- the dynamics
@pytest.mark.parametrize("model, kw", [("cp", dict(rank=6, balanced=True)), ("matrix", dict(depth=3, balanced=True))])
def test_norm_law_sides_agree_on_balanced_trajectory(model, kw):
    shape = (4, 4) if model == "matrix" else (4, 4, 4)
    T = _cp_target(shape, 2, seed=5)
    idx, val = _observe(T, T.numel() // 2, seed=5)
    _, rec = factorized_completion(idx, val, shape, model=model, init_scale=0.3, lr=1e-3, steps=60, record_every=1,
                                   keep_models=True, seed=5, **kw)
    dyn = norm_dynamics(rec, idx, val)
    assert isinstance(dyn, NormDynamics) and dyn.lhs.shape == dyn.rhs.shape == (59, dyn.norms.shape[1])
    assert float(dyn.rhs.abs().max()) > 1e-3                                    # the norms do move
    assert float(dyn.relative_gap().max()) < 5e-3


def test_norm_law_needs_balance():
    "The law is a statement about balanced starts: an unbalanced CP start breaks it (so the check can fail)."
    T = _cp_target((4, 4, 4), 2, seed=5)
    idx, val = _observe(T, 32, seed=5)
    _, rec = factorized_completion(idx, val, T.shape, model="cp", rank=6, init_scale=0.3, lr=1e-3, steps=30,
                                   record_every=1, keep_models=True, seed=5)
    assert float(norm_dynamics(rec, idx, val).relative_gap().max()) > 0.05


def test_ht_local_law_holds_from_a_small_start():
    "Local components (N = 3): the random start's imbalance is O(init^2), negligible once the norms grow."
    T = _cp_target((3, 3, 3, 3), 2, seed=6)
    T = T / T.norm() * 9
    idx, val = _observe(T, 50, seed=6)
    _, rec = factorized_completion(idx, val, T.shape, model="ht", rank=3, init_scale=0.05, lr=4e-3, steps=600,
                                   optimizer="adaptive", record_every=1, keep_models=True, seed=6)
    dyn = norm_dynamics(rec, idx, val)
    assert dyn.order == 3 and len(dyn.nodes) == dyn.lhs.shape[1] == 9
    assert float(dyn.norms[-1].max()) > 1.0                                   # components did leave zero
    assert float(dyn.relative_gap().max()) < 0.02


# ---------------------------------------------------------------- HT factorization = chapter 01's HT contraction
def test_ht_model_end_to_end_equals_library_contraction():
    T = _cp_target((2, 3, 4, 3, 2), 2, seed=7)
    idx, val = _observe(T, 60, seed=7)
    x, _ = factorized_completion(idx, val, T.shape, model="ht", rank=3, init_scale=0.5, lr=0.01, steps=20, seed=7)
    every = torch.cartesian_prod(*[torch.arange(n) for n in T.shape])
    dense = ht_full(x.leaves, x.transfers)
    assert_close(x.entries(every).reshape(T.shape), dense)
    # the diagonal transfers: B[a, b, r] = delta_ab W[a, r], written out for the root of ht_tree(5)
    B = x.transfers[(0, 5)]
    assert_close(B, torch.diag_embed(torch.diagonal(B, dim1=0, dim2=1)).permute(1, 2, 0))
    norms = component_norms(x)
    assert set(norms) == set(x.tree) and all(v.shape == (3,) for v in norms.values())


# ---------------------------------------------------------------- readouts
@given(st.integers(1, 3), st.integers(0, 10_000))
def test_numerical_cp_rank_of_exact_low_rank(rank, seed):
    T = _cp_target((5, 5, 5), rank, seed=seed)
    assert numerical_cp_rank(T, tol=1e-4) == rank


@given(st.integers(1, 3), st.integers(1, 3), st.integers(0, 10_000))
def test_hierarchical_rank_of_factorization_is_bounded_by_widths(w_low, w_root, seed):
    g = _gen(seed)
    leaves = [torch.randn(4, w_low, generator=g, dtype=torch.float64) for _ in range(4)]
    nodes = {(0, 2): torch.randn(w_low, w_root, generator=g, dtype=torch.float64),
             (2, 4): torch.randn(w_low, w_root, generator=g, dtype=torch.float64),
             (0, 4): torch.randn(w_root, 1, generator=g, dtype=torch.float64)}
    x = HTTensor(leaves, {n: torch.diag_embed(W.mT).permute(1, 2, 0) for n, W in nodes.items()})
    r = hierarchical_rank(x.full(), rtol=1e-9)
    assert r[(0, 2)] == r[(2, 4)] == min(w_low, w_root)                          # generic: the smaller width
    assert all(r[(k, k + 1)] == w_low for k in range(4))


def test_hierarchical_rank_against_numpy_matrix_rank():
    "Oracle: NumPy's matrix_rank of the same matricizations (rows: the node's modes, in order)."
    np = pytest.importorskip("numpy")
    g = _gen(12)
    T = torch.einsum("ia,ja,kb,lb,ab->ijkl", *[torch.randn(n, 3, generator=g, dtype=torch.float64) for n in (3, 4, 4, 3)],
                     torch.randn(3, 3, generator=g, dtype=torch.float64))
    r = hierarchical_rank(T, rtol=1e-10)
    A = T.numpy()
    for (a, b), rank in r.items():
        rows = list(range(a, b)); cols = [m for m in range(4) if m not in rows]
        M = A.transpose(rows + cols).reshape(int(np.prod([A.shape[m] for m in rows])), -1)
        s = np.linalg.svd(M, compute_uv=False)
        assert rank == np.linalg.matrix_rank(M, tol=1e-10 * s[0])


def test_component_norms_match_dense_components():
    g = _gen(8)
    x = CPTensor(None, [torch.randn(n, 4, generator=g, dtype=torch.float64) for n in (3, 4, 5)])
    dense = [CPTensor(None, [A[:, r:r + 1] for A in x.factors]).full().norm() for r in range(4)]
    assert_close(component_norms(x), torch.stack(dense))
    m = MatrixFactorization([torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)])
    assert_close(component_norms(m), torch.linalg.svdvals(m.factors[1] @ m.factors[0]))
    full_ht = HTTensor([torch.randn(3, 2, generator=g, dtype=torch.float64) for _ in range(2)],
                       {(0, 2): torch.randn(2, 2, 1, generator=g, dtype=torch.float64)})
    with pytest.raises(ValueError, match="off-diagonal"):
        component_norms(full_ht)


# ---------------------------------------------------------------- bad input
def _fit(**kw):
    args = dict(observed_idx=TWO_BY_TWO[0], observed_val=TWO_BY_TWO[1], shape=(2, 2))
    args.update(kw)
    return factorized_completion(args.pop("observed_idx"), args.pop("observed_val"), args.pop("shape"), steps=1, **args)


@pytest.mark.parametrize("kw, err, match", [
    (dict(observed_idx=torch.tensor([[0, 2]]), observed_val=torch.tensor([1.0])), ValueError, "observed_idx.*outside"),
    (dict(observed_idx=torch.tensor([[0, -1]]), observed_val=torch.tensor([1.0])), ValueError, "observed_idx.*outside"),
    (dict(observed_idx=torch.tensor([[0, 1], [0, 1]]), observed_val=torch.tensor([1.0, 2.0])), ValueError, "observed_val.*more than once"),
    (dict(observed_idx=torch.tensor([[0.0, 1.0]]), observed_val=torch.tensor([1.0])), TypeError, "observed_idx"),
    (dict(observed_idx=[[0, 1]]), TypeError, "observed_idx"),
    (dict(observed_idx=torch.tensor([[0, 1, 0]]), observed_val=torch.tensor([1.0])), ValueError, "observed_idx"),
    (dict(observed_val=torch.tensor([1, 1, 0])), TypeError, "observed_val"),
    (dict(observed_val=torch.tensor([1.0, float("nan"), 0.0])), ValueError, "observed_val"),
    (dict(observed_val=torch.tensor([1.0, 1.0])), ValueError, "observed_val"),
    (dict(shape=(2, 0)), ValueError, "shape"),
    (dict(shape="ab"), TypeError, "shape"),
    (dict(init_scale=0.0), ValueError, "init_scale"),
    (dict(init_scale=-1e-3), ValueError, "init_scale"),
    (dict(init_scale=float("nan")), ValueError, "init_scale"),
    (dict(depth=0), ValueError, "depth"),
    (dict(depth=2.5), TypeError, "depth"),
    (dict(model="cp", depth=3), ValueError, "depth"),
    (dict(model="tucker"), ValueError, "model"),
    (dict(optimizer="adam"), ValueError, "optimizer"),
    (dict(rank=0), ValueError, "rank"),
    (dict(lr=0.0), ValueError, "lr"),
    (dict(record_every=0), ValueError, "record_every"),
    (dict(model="ht", balanced=True), ValueError, "balanced"),
    (dict(model="ht", rank={(0, 2): 2, (5, 6): 1}), ValueError, "rank"),
    (dict(shape=(2, 2, 2)), ValueError, "observed_idx"),
])
def test_bad_input_names_the_argument(kw, err, match):
    with pytest.raises(err, match=match):
        _fit(**kw)


def test_bad_input_steps_and_matrix_shape():
    with pytest.raises(ValueError, match="steps"):
        factorized_completion(*TWO_BY_TWO, (2, 2), steps=-1)
    with pytest.raises(ValueError, match="shape"):
        factorized_completion(torch.tensor([[0, 1, 1]]), torch.tensor([1.0]), (2, 2, 2), model="matrix")


def test_bad_input_readouts():
    with pytest.raises(TypeError, match="record"):
        norm_dynamics({"loss": []}, *TWO_BY_TWO)
    _, rec = factorized_completion(*TWO_BY_TWO, (2, 2), steps=5)
    with pytest.raises(ValueError, match="keep_models"):
        norm_dynamics(rec, *TWO_BY_TWO)
    with pytest.raises(TypeError, match="T"):
        numerical_cp_rank([[1.0]])
    with pytest.raises(ValueError, match="T"):
        hierarchical_rank(torch.ones(3))
    with pytest.raises(ValueError, match="rtol"):
        hierarchical_rank(torch.ones(2, 2), rtol=-1.0)
    with pytest.warns(DeprecationWarning, match="rtol"):                # the old name still works, with a warning
        assert hierarchical_rank(torch.ones(2, 2, 2), tol=1e-3) == hierarchical_rank(torch.ones(2, 2, 2), rtol=1e-3)
    with pytest.raises(TypeError, match="not both"):
        hierarchical_rank(torch.ones(2, 2), rtol=1e-3, tol=1e-3)
    with pytest.raises(ValueError, match="max_rank"):
        numerical_cp_rank(torch.ones(2, 2, 2), max_rank=0)
    with pytest.raises(TypeError, match="x:"):
        component_norms(torch.ones(2, 2))


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_mixed_devices_rejected():
    with pytest.raises(ValueError, match="observed_idx"):
        factorized_completion(TWO_BY_TWO[0], TWO_BY_TWO[1].cuda(), (2, 2), steps=1)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("model", ["matrix", "cp", "ht"])
def test_gpu_fit_matches_cpu(model):
    shape = (4, 4) if model == "matrix" else (4, 4, 4)
    T = _cp_target(shape, 2, seed=9)
    idx, val = _observe(T, T.numel() // 2, seed=9)
    kw = dict(model=model, init_scale=0.3, lr=0.02, steps=100, seed=9, **({"rank": 5} if model != "matrix" else {}))
    x_cpu, r_cpu = factorized_completion(idx, val, shape, **kw)
    x_gpu, r_gpu = factorized_completion(idx.cuda(), val.cuda(), shape, **kw)
    assert x_gpu.full().device.type == "cuda" and r_gpu.loss.device.type == "cuda"
    assert_close(x_gpu.full().cpu(), x_cpu.full(), rtol=1e-8, atol=1e-10)


# ---------------------------------------------------------------- the regulariser against locality
def _direct_penalty(T, index, region, other):
    "Independent computation: fibers by slicing, one row at a time, cosine by torch.nn.functional."
    prev = index.roll(1, 0)
    out = []
    for row, before in zip(index.tolist(), prev.tolist()):
        swapped = list(row)
        for m in other: swapped[m] = before[m]
        def grad(pos):
            parts = []
            for m in region:
                sl = list(pos); sl[m] = slice(None)
                parts.append(T[tuple(sl)])
            return torch.cat(parts)
        out.append(torch.nn.functional.cosine_similarity(grad(row), grad(swapped), dim=0).abs())
    return torch.stack(out).mean()


@pytest.mark.parametrize("shape, regions", [((3, 4, 5), None), ((3, 2, 4, 3), ((0, 1), (3,))),
                                            ((2, 3, 2, 3), ((2,), (0, 1)))])
def test_penalty_value_and_gradient_match_direct_computation(shape, regions):
    g = _gen(7)
    T = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    idx = torch.stack([torch.randint(0, n, (9,), generator=g) for n in shape], 1)
    reg = regions or ((0,), (len(shape) - 1,))
    p = gradient_change_penalty(T, idx, regions=regions)
    q = _direct_penalty(T, idx, *reg)
    assert_close(p, q)
    gp, = torch.autograd.grad(p, T)
    gq, = torch.autograd.grad(q, T)
    assert_close(gp, gq)
    assert torch.autograd.gradcheck(lambda X: gradient_change_penalty(X, idx, regions=regions), (T.detach().requires_grad_(),))


def test_penalty_is_one_for_separable_tensors_and_zero_for_orthogonal_fibers():
    g = _gen(8)
    sep = torch.einsum("i,jk->ijk", torch.randn(4, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64))
    idx = torch.stack([torch.randint(0, n, (11,), generator=g) for n in sep.shape], 1)
    assert_close(gradient_change_penalty(sep, idx), torch.tensor(1.0, dtype=torch.float64))
    Q = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))[0]
    T = torch.einsum("il,j->ijl", Q, torch.ones(2, dtype=torch.float64))       # mode-0 fibers Q[:, l]
    idx = torch.tensor([[0, 0, 0], [1, 1, 1], [2, 0, 2], [3, 1, 3]])             # consecutive rows differ in l
    assert float(gradient_change_penalty(T, idx)) < 1e-12


def test_fit_with_regulariser_records_the_penalty_of_its_models():
    all4 = torch.cartesian_prod(*[torch.arange(3)] * 4)
    T = (2.0 * (all4[:, 0] == all4[:, 3]) - 1).double().reshape(3, 3, 3, 3)
    idx = all4[torch.randperm(81, generator=_gen(3))[:40]]
    val = T[tuple(idx.T)]
    x, rec = factorized_completion(idx, val, T.shape, model="ht", rank=4, init_scale=0.3, lr=0.1, steps=40,
                                   record_every=20, keep_models=True, locality_reg=0.1, seed=0)
    assert rec.penalty is not None and rec.penalty.shape == (3,)
    for m, p in zip(rec.models, rec.penalty):
        assert_close(gradient_change_penalty(m.full(), idx), p)
        res = m.full()[tuple(idx.T)] - val
    assert_close(0.5 * (res * res).mean(), rec.loss[-1])                   # the recorded loss is the data loss
    _, plain = factorized_completion(idx, val, T.shape, model="ht", rank=4, init_scale=0.3, lr=0.1, steps=40,
                                     record_every=20, seed=0)
    assert plain.penalty is None and torch.equal(plain.loss[0], rec.loss[0]) and not torch.equal(plain.loss[-1], rec.loss[-1])


@pytest.mark.parametrize("seed", [1, 2])
def test_regulariser_raises_the_long_range_rank_along_training(seed):
    "Same-or-different target on 4^4: with the regulariser the root cut {0,1}|{2,3} carries more rank along the run."
    from tensornn.expressivity import matricization_rank
    all4 = torch.cartesian_prod(*[torch.arange(4)] * 4)
    T = (2.0 * (all4[:, 0] == all4[:, 3]) - 1).double().reshape(4, 4, 4, 4)
    obs = all4[torch.randperm(256, generator=_gen(60 + seed))[:128]]
    ranks = {}
    for lam in (0.0, 0.05):
        _, rec = factorized_completion(obs, T[tuple(obs.T)], T.shape, model="ht", rank=8, init_scale=0.3, lr=0.2,
                                       steps=2000, record_every=250, keep_models=True, locality_reg=lam, seed=seed)
        ranks[lam] = sum(matricization_rank(m.full(), (0, 1), tol=0.1) for m in rec.models)
    assert ranks[0.05] >= ranks[0.0] + 5


@pytest.mark.parametrize("kw, err, match", [
    (dict(locality_reg=-0.1), ValueError, "locality_reg"),
    (dict(locality_reg=float("nan")), ValueError, "locality_reg"),
    (dict(locality_reg="big"), TypeError, "locality_reg"),
    (dict(reg_regions=((0,), (0,))), ValueError, "reg_regions.*disjoint"),
    (dict(reg_regions=((0,), (2,))), ValueError, r"reg_regions\[1\]"),
    (dict(reg_regions=((0,), ())), TypeError, r"reg_regions\[1\]"),
    (dict(reg_regions=(0, 1)), TypeError, r"reg_regions\[0\]"),
    (dict(reg_regions="01"), TypeError, "reg_regions"),
    (dict(reg_regions=((0, 0), (1,))), ValueError, r"reg_regions\[0\]"),
    (dict(reg_regions=((0.5,), (1,))), TypeError, r"reg_regions\[0\]"),
])
def test_bad_regulariser_arguments(kw, err, match):
    with pytest.raises(err, match=match):
        _fit(**kw)


def test_bad_input_penalty():
    T = torch.randn(3, 3, 3, generator=_gen(0))
    idx = torch.tensor([[0, 1, 2], [2, 1, 0]])
    with pytest.raises(TypeError, match="T"):
        gradient_change_penalty([[1.0]], idx)
    with pytest.raises(ValueError, match="T"):
        gradient_change_penalty(torch.ones(3), torch.tensor([[0]]))
    with pytest.raises(ValueError, match="T"):
        gradient_change_penalty(torch.full((2, 2), float("nan")), torch.tensor([[0, 1]]))
    with pytest.raises(TypeError, match="T"):
        gradient_change_penalty(torch.ones(2, 2, dtype=torch.complex64), torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="index.*outside"):
        gradient_change_penalty(T, torch.tensor([[0, 3, 0]]))
    with pytest.raises(ValueError, match="index"):
        gradient_change_penalty(T, torch.tensor([[0, 1]]))
    with pytest.raises(TypeError, match="index"):
        gradient_change_penalty(T, idx.double())
    with pytest.raises(ValueError, match="regions"):
        gradient_change_penalty(T, idx, regions=((0, 1), (1, 2)))


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_regularised_fit_and_penalty_match_cpu():
    all4 = torch.cartesian_prod(*[torch.arange(3)] * 4)
    T = (2.0 * (all4[:, 0] == all4[:, 3]) - 1).double().reshape(3, 3, 3, 3)
    idx = all4[torch.randperm(81, generator=_gen(4))[:40]]
    # The regularised descent amplifies rounding: on the CPU alone, a 1e-15 relative change of the values moves the
    # 50-step result by ~1e-6 relative (the |cos| penalty), but by ~1e-16 after 10 steps. So the regularised run is
    # compared over 10 steps and the unregularised one over 50, both to float64 rounding.
    for reg, steps in ((0.1, 10), (0.0, 50)):
        kw = dict(model="ht", rank=4, init_scale=0.3, lr=0.1, steps=steps, locality_reg=reg, seed=4)
        x_cpu, r_cpu = factorized_completion(idx, T[tuple(idx.T)], T.shape, **kw)
        x_gpu, r_gpu = factorized_completion(idx.cuda(), T[tuple(idx.T)].cuda(), T.shape, **kw)
        assert r_gpu.loss.device.type == "cuda" and (r_gpu.penalty is None) == (reg == 0)
        assert_close(x_gpu.full().cpu(), x_cpu.full(), rtol=1e-8, atol=1e-12)
        if reg: assert_close(r_gpu.penalty.cpu(), r_cpu.penalty, rtol=1e-8, atol=0)
    assert_close(gradient_change_penalty(T.cuda(), idx.cuda()).cpu(), gradient_change_penalty(T, idx))
    with pytest.raises(ValueError, match="index"):
        gradient_change_penalty(T.cuda(), idx)
