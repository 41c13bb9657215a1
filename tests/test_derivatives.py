"""Tests for tensornn.derivatives: Hermite score tensors, Stein moments, derivative tensors, NN-LIFT,
Jacobian decoupling, active subspaces, Paratuck-2 for three layers, and the Ge-Lee-Ma identity."""
from __future__ import annotations

import math

import pytest
import torch
from torch.func import vmap

from tensornn.derivatives import (TwoLayerNet, active_subspace, derivative_tensor, fit_paratuck2, fit_sgd, fit_sum_of_cubes,
                                  hermite_coefficients, hermite_score, jacobian_decoupling, matched_row_cosines,
                                  nnlift, population_loss_hermite, stein_moment, three_layer_jacobian_factors,
                                  weights_from_spans)
from tensornn.testing import assert_close
from tensornn.theory import factor_match_score, paratuck2

DTYPES = [torch.float32, torch.float64]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- Hermite score tensors: closed forms
@pytest.mark.parametrize("dtype", DTYPES)
def test_hermite_closed_forms(dtype):
    x = torch.randn(6, 3, generator=_gen(), dtype=torch.float64).to(dtype)
    I = torch.eye(3, dtype=dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    assert_close(hermite_score(x, 1), x, **tol)
    assert_close(hermite_score(x, 2), torch.einsum("ni,nj->nij", x, x) - I, **tol)
    s3 = (torch.einsum("ni,nj,nk->nijk", x, x, x) - torch.einsum("ni,jk->nijk", x, I)
          - torch.einsum("nj,ik->nijk", x, I) - torch.einsum("nk,ij->nijk", x, I))
    assert_close(hermite_score(x, 3), s3, **tol)
    xx = torch.einsum("ni,nj->nij", x, x)
    s4 = torch.einsum("ni,nj,nk,nl->nijkl", x, x, x, x)
    for e in ["nij,kl->nijkl", "nik,jl->nijkl", "nil,jk->nijkl", "njk,il->nijkl", "njl,ik->nijkl", "nkl,ij->nijkl"]:
        s4 = s4 - torch.einsum(e, xx, I)
    s4 = s4 + (torch.einsum("ij,kl->ijkl", I, I) + torch.einsum("ik,jl->ijkl", I, I) + torch.einsum("il,jk->ijkl", I, I))
    assert_close(hermite_score(x, 4), s4, **tol)


def test_hermite_univariate_polynomials():
    z = torch.linspace(-3, 3, 13, dtype=torch.float64)[:, None]
    for m, he in [(1, z), (2, z**2 - 1), (3, z**3 - 3 * z), (4, z**4 - 6 * z**2 + 3)]:
        assert_close(hermite_score(z, m).reshape(-1), he.reshape(-1))


def test_hermite_symmetric_and_zero_mean():
    x = torch.randn(200_000, 2, generator=_gen(1), dtype=torch.float64)
    for m in (1, 2, 3, 4):
        S = hermite_score(x[:5], m)
        if m >= 2:
            assert_close(S, S.transpose(-1, -2))
        mean = stein_moment(x, torch.ones(len(x), dtype=torch.float64), m)       # E[S_m] = 0
        assert float(mean.abs().max()) < 0.1


# ---------------------------------------------------------------- Stein moments
@pytest.mark.parametrize("dtype", DTYPES)
def test_stein_moment_matches_materialised(dtype):
    g = _gen(2)
    x = torch.randn(40, 4, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randn(40, 3, generator=g, dtype=torch.float64).to(dtype)
    W = torch.randn(4, 2, generator=g, dtype=torch.float64).to(dtype)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    for m in (1, 2, 3, 4):
        dense = torch.einsum("nk,n...->k...", y, hermite_score(x, m)) / 40
        assert_close(stein_moment(x, y, m, chunk_size=9), dense, **tol)
        proj = dense[1]
        for _ in range(m):
            proj = torch.tensordot(proj, W, dims=([0], [0]))
        assert_close(stein_moment(x, y[:, 1], m, project=W), proj, **tol)


def _stein_z(f, d, N, seed, order=3, n_deriv=20_000):
    "max over entries of |E[y S_m] - E[grad^m f]| / SE, both sides Monte-Carlo estimates on independent samples."
    g = _gen(seed)
    X = torch.randn(N, d, generator=g, dtype=torch.float64)
    y = vmap(f)(X)
    lhs = stein_moment(X, y, order)
    per = y[:, None] * hermite_score(X, order).reshape(N, -1)
    D = derivative_tensor(f, torch.randn(n_deriv, d, generator=g, dtype=torch.float64), order).reshape(n_deriv, -1)
    se = (per.var(0) / N + D.var(0) / n_deriv).sqrt().reshape(lhs.shape)
    return float(((lhs - D.mean(0).reshape(lhs.shape)) / se).abs().max())


def test_stein_identity_polynomial():
    u = torch.tensor([0.7, -0.4, 0.2], dtype=torch.float64)
    f = lambda v: (u @ v) ** 3 + v[0] * v[1] * v[2]
    assert _stein_z(f, 3, 100_000, 3) < 5


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_stein_identity_tanh_unit(order):
    u = torch.tensor([0.9, 0.3, -0.5], dtype=torch.float64)
    f = lambda v: torch.tanh(u @ v - 0.3)
    assert _stein_z(f, 3, 100_000, 4, order=order) < 5


def test_stein_identity_detects_a_wrong_score():
    "The check can fail: the raw moment E[y x^(x)3] (no Hermite correction) misses E[grad^3 f] by many SE."
    u = torch.tensor([0.9, 0.3, -0.5], dtype=torch.float64)
    g = _gen(8)
    X = torch.randn(100_000, 3, generator=g, dtype=torch.float64)
    y = torch.tanh(X @ u - 0.3)
    per = torch.einsum("n,ni,nj,nk->nijk", y, X, X, X).reshape(len(X), -1)
    rhs = derivative_tensor(lambda v: torch.tanh(u @ v - 0.3), X[:20_000], 3).mean(0).reshape(-1)
    assert float(((per.mean(0) - rhs) / (per.std(0) / math.sqrt(len(X)))).abs().max()) > 10


# ---------------------------------------------------------------- derivative tensors
def test_derivative_tensor_shapes_and_values():
    g = _gen(5)
    A = torch.randn(3, 4, generator=g, dtype=torch.float64)
    f = lambda v: torch.tanh(A @ v).sum()
    X = torch.randn(6, 4, generator=g, dtype=torch.float64)
    H = derivative_tensor(f, X, 2)
    assert H.shape == (6, 4, 4)
    t = torch.tanh(X @ A.T)
    expected = torch.einsum("nr,ri,rj->nij", -2 * t * (1 - t ** 2), A, A)
    assert_close(H, expected)
    assert derivative_tensor(lambda v: A @ v, X, 1).shape == (6, 3, 4)
    assert derivative_tensor(f, X[0], 3).shape == (4, 4, 4)


# ---------------------------------------------------------------- NN-LIFT
@pytest.mark.parametrize("method", ["jennrich", "power"])
def test_nnlift_recovers_first_layer(method):
    g = _gen(1)
    truth = TwoLayerNet.random(6, 3, generator=g, dtype=torch.float64)
    X = torch.randn(100_000, 6, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = truth(X)
    est, rec = nnlift(X, y, 3, method=method, seed=0, fit_iter=50)
    cos = matched_row_cosines(est.A1.detach(), truth.A1.detach())
    assert bool((cos > 0.95).all()), cos
    assert isinstance(est, TwoLayerNet) and est.A1.shape == (3, 6)


def test_nnlift_float32():
    g = _gen(1)
    truth = TwoLayerNet.random(5, 2, generator=g, dtype=torch.float32)
    X = torch.randn(100_000, 5, generator=g, dtype=torch.float32)
    with torch.no_grad():
        y = truth(X)
    est, _ = nnlift(X, y, 2, seed=0, fit_iter=30)
    assert est.A1.dtype == torch.float32
    assert bool((matched_row_cosines(est.A1.detach(), truth.A1.detach()) > 0.95).all())


# ---------------------------------------------------------------- decoupling
@pytest.mark.parametrize("dtype", DTYPES)
def test_decoupling_noiseless_polynomial_is_exact(dtype):
    g = _gen(3)
    V = torch.randn(4, 3, generator=g, dtype=torch.float64).to(dtype)
    W = torch.randn(3, 3, generator=g, dtype=torch.float64).to(dtype)
    C = torch.randn(3, 4, generator=g, dtype=torch.float64).to(dtype)
    p = torch.arange(4, dtype=dtype)
    f = lambda v: W @ (C * (v @ V)[:, None] ** p).sum(1)
    pts = torch.randn(40, 4, generator=g, dtype=torch.float64).to(dtype)
    model, rec = jacobian_decoupling(f, pts, 3, n_basis=3, seed=0)
    Xn = torch.randn(100, 4, generator=g, dtype=torch.float64).to(dtype)
    err = float((model(Xn) - vmap(f)(Xn)).norm() / vmap(f)(Xn).norm())
    assert err < (1e-3 if dtype == torch.float32 else 1e-9)
    cos = matched_row_cosines(model.V.mT, V.mT)
    assert bool((cos > 1 - (1e-4 if dtype == torch.float32 else 1e-10)).all())
    assert model(Xn).dtype == dtype


def test_decoupling_tanh_network_factors():
    g = _gen(4)
    A1 = torch.randn(3, 5, generator=g, dtype=torch.float64)
    A2 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    f = lambda v: A2 @ torch.tanh(A1 @ v + 0.2)
    pts = torch.randn(100, 5, generator=g, dtype=torch.float64)
    model, _ = jacobian_decoupling(f, pts, 3, basis="gaussian", n_basis=12, seed=0)
    assert bool((matched_row_cosines(model.V.mT, A1) > 0.9999).all())


def test_decoupling_beyond_kruskal_warns_instead_of_refusing():
    # issue 9: a 4 x 4 x 30 rank-7 Jacobian tensor is outside Kruskal's condition but inside De Lathauwer's generic
    # one; main refused it as "not identifiable"
    g = _gen(7)
    V, W = torch.randn(4, 7, generator=g, dtype=torch.float64), torch.randn(4, 7, generator=g, dtype=torch.float64)
    C = torch.randn(7, 4, generator=g, dtype=torch.float64)
    p = torch.arange(4, dtype=torch.float64)
    f = lambda v: W @ (C * (v @ V)[:, None] ** p).sum(1)
    pts = torch.randn(30, 4, generator=g, dtype=torch.float64)
    with pytest.warns(UserWarning, match="not covered by Kruskal's condition"):
        model, rec = jacobian_decoupling(f, pts, 7, n_basis=3, n_init=1, n_iter=20, seed=0)
    assert model.rank == 7 and model.V.shape == (4, 7) and rec.n_iter > 0


def test_rank7_4x4x30_is_recovered_by_cp_als():
    # the same shape and rank with generic factors: cp_als from a random start recovers them (issue 9)
    from tensornn.decompositions import cp_als
    from tensornn.formats import random_cp
    truth = random_cp((4, 4, 30), 7, seed=0, dtype=torch.float64)
    fit, rec = cp_als(truth.full(), 7, n_iter=1000, tol=1e-14, init="random", seed=1)
    fms, _ = factor_match_score(truth.factors, fit.factors)
    assert fms > 1 - 1e-6, (fms, rec.final_error)


def test_decoupling_refusal_does_not_say_not_identifiable():
    f = lambda v: torch.stack([v.sum(), (v ** 2).sum()])
    with pytest.raises(ValueError, match="not covered by Kruskal's condition") as e:
        jacobian_decoupling(f, torch.randn(10, 4, dtype=torch.float64), 5)
    assert "not identifiable" not in str(e.value)


def test_hermite_score_refuses_1d_and_huge_outputs():
    # issue 9: a 1-D tensor was read as ONE point of dimension N and order 3 tried to allocate N^3 numbers
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        hermite_score(torch.randn(10_000, dtype=torch.float64), 3)
    with pytest.raises(ValueError, match="stein_moment"):
        hermite_score(torch.zeros(100, 600), 3)
    assert hermite_score(torch.randn(7, dtype=torch.float64)[:, None], 3).shape == (7, 1, 1, 1)


def test_one_activation_table_and_no_private_twins():
    import tensornn.derivatives as Dm
    import tensornn.expressivity as Em
    assert Dm.get_activation is Em.get_activation
    for twin in ("_sym_jennrich", "_sym_power", "_symmetric_decomposition"):   # symmetric CP lives in theory only
        assert not hasattr(Dm, twin), twin
    assert not hasattr(Dm, "_paratuck2_full") and not hasattr(Dm, "_check_order") and not hasattr(Em, "_check_order")
    assert {"tanh", "sigmoid", "relu", "cube", "identity"} <= set(Em._ACTIVATIONS)


def test_numpy_inputs_and_integers():
    import numpy as np
    x = np.random.default_rng(0).standard_normal((20, 3))
    assert hermite_score(x, np.int64(2)).shape == (20, 3, 3)
    assert stein_moment(x, x[:, 0], 1).shape == (3,)
    with pytest.raises(TypeError, match="seed"):
        TwoLayerNet.random(3, 2, seed="a")


# ---------------------------------------------------------------- active subspaces
def test_active_subspace_and_weights_from_spans():
    g = _gen(5)
    A = torch.randn(3, 8, generator=g, dtype=torch.float64)
    A = A / A.norm(dim=1, keepdim=True)
    f = lambda v: torch.tanh(A @ v + 0.1).sum()
    pts = torch.randn(200, 8, generator=g, dtype=torch.float64)
    ev, U = active_subspace(f, pts)
    assert U.shape == (8, 3) and float(ev[3]) < 1e-12 * float(ev[0])
    A_hat, _ = weights_from_spans(f, pts, 3, seed=0)
    assert bool((matched_row_cosines(A_hat, A) > 0.999).all())


# ---------------------------------------------------------------- three layers
def test_three_layer_jacobian_is_paratuck2_and_fit():
    g = _gen(0)
    L1 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    L2 = torch.randn(2, 3, generator=g, dtype=torch.float64)
    L3 = torch.randn(3, 2, generator=g, dtype=torch.float64)
    f = lambda v: L3 @ torch.tanh(L2 @ torch.tanh(L1 @ v))
    pts = torch.randn(50, 4, generator=g, dtype=torch.float64)
    J = derivative_tensor(f, pts, 1).permute(1, 2, 0)
    A, DA, H, DB, B = three_layer_jacobian_factors(L1, L2, L3, pts)
    model = torch.einsum("ip,kpq,jq->ijk", A, DA[:, :, None] * H[None] * DB[:, None, :], B)
    assert_close(model, J)
    (_, _, _, _, B_hat), rec = fit_paratuck2(J, 2, 3, n_init=2, seed=0)
    assert rec.errors[-1] < 1e-8
    assert bool((matched_row_cosines(B_hat.mT, L1) > 0.9999).all())


# ---------------------------------------------------------------- Ge-Lee-Ma identity, sum of cubes
def test_hermite_coefficients_and_ge_lee_ma_cube():
    assert_close(hermite_coefficients("cube", 4), torch.tensor([0, 3, 0, math.sqrt(6), 0], dtype=torch.float64),
                 rtol=0, atol=1e-12)
    g = _gen(6)
    W = torch.randn(2, 4, generator=g, dtype=torch.float64); W = W / W.norm(dim=1, keepdim=True)
    V = torch.randn(3, 4, generator=g, dtype=torch.float64); V = V / V.norm(dim=1, keepdim=True)
    a, b = torch.randn(2, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    # exact population loss for cubic units from Gaussian moments: compare with a large Monte-Carlo sample
    X = torch.randn(1_000_000, 4, generator=g, dtype=torch.float64)
    sq = ((X @ W.T) ** 3 @ a - (X @ V.T) ** 3 @ b) ** 2
    total = float(population_loss_hermite(a, W, b, V, hermite_coefficients("cube", 3)).sum())
    assert abs(float(sq.mean()) - total) < 4 * float(sq.std()) / 1000


def test_fit_sum_of_cubes_undercomplete():
    g = _gen(0)
    A = torch.randn(12, 6, generator=g, dtype=torch.float64)
    A = A / A.norm(dim=0)
    _, rec = fit_sum_of_cubes(A, generator=g)
    err, cos = rec.final_error, rec.info["cosines"]
    assert float(err) < 1e-5 and bool((cos > 0.999).all())
    assert rec.converged and 0 < rec.n_iter < 3000 and rec.errors[-1] <= rec.errors[0]


# ---------------------------------------------------------------- bad inputs
def test_bad_inputs_name_the_argument():
    x = torch.randn(100, 4, dtype=torch.float64)
    y = torch.randn(100, dtype=torch.float64)
    with pytest.raises(ValueError, match="order"):
        hermite_score(x, 0)
    with pytest.raises(TypeError, match="order"):
        hermite_score(x, 2.0)
    with pytest.raises(ValueError, match="x:"):
        hermite_score(torch.randn(2, 3, 4), 2)
    with pytest.raises(ValueError, match="y:"):
        stein_moment(x, y[:50], 3)
    with pytest.raises(TypeError, match="dtype"):
        stein_moment(x, y.float(), 3)
    with pytest.raises(ValueError, match=r"project\[2\]"):
        stein_moment(x, y, 3, project=[None, None, torch.randn(3, 1, dtype=torch.float64)])
    with pytest.raises(ValueError, match="x:"):
        stein_moment(torch.full((100, 4), float("nan"), dtype=torch.float64), y, 2)
    with pytest.raises(TypeError, match="f:"):
        derivative_tensor(3, x, 1)
    with pytest.raises(ValueError, match="n_hidden"):
        nnlift(x, y, 5)                                          # rank larger than identifiable (d = 4)
    with pytest.raises(ValueError, match="method"):
        nnlift(x, y, 2, method="svd")
    with pytest.raises(ValueError, match="activation"):
        nnlift(x, y, 2, activation="gelu?")
    f = lambda v: torch.stack([v.sum(), (v ** 2).sum()])
    with pytest.raises(ValueError, match="rank"):
        jacobian_decoupling(f, x[:10], 5)                        # rank larger than identifiable
    with pytest.raises(ValueError, match="basis"):
        jacobian_decoupling(f, x[:10], 1, basis="fourier")
    with pytest.raises(ValueError, match="n_hidden"):
        weights_from_spans(lambda v: v.sum(), x[:10], 6)
    with pytest.raises(ValueError, match="P:"):
        fit_paratuck2(torch.randn(2, 3, 4, dtype=torch.float64), 3, 2)
    with pytest.raises(TypeError, match="degree"):
        hermite_coefficients("tanh", "3")
    with pytest.raises(ValueError, match="degree"):
        hermite_coefficients("tanh", -1)
    W = torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match="W"):
        population_loss_hermite(torch.ones(2, dtype=torch.float64), W.float(), torch.ones(2, dtype=torch.float64), W,
                                torch.ones(3, dtype=torch.float64))
    with pytest.raises(TypeError, match="A1"):
        three_layer_jacobian_factors(torch.randn(3, 4), torch.randn(2, 3), torch.randn(3, 2), x)
    with pytest.raises(TypeError, match="net"):
        fit_sgd(TwoLayerNet.random(4, 2, dtype=torch.float32), x, y, steps=1)


# ---------------------------------------------------------------- gradient-descent baseline
def _small_problem(seed=0, n=2000):
    g = _gen(seed)
    truth = TwoLayerNet.random(4, 2, generator=g, dtype=torch.float64)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    with torch.no_grad(): y = truth(x)
    return x, y


def test_fit_sgd_unknown_optimizer():
    x, y = _small_problem()
    with pytest.raises(ValueError, match=r"^optimizer"):
        fit_sgd(TwoLayerNet.random(4, 2, seed=1, dtype=torch.float64), x, y, steps=1, optimizer="lbfgs")


def test_fit_sgd_warns_when_the_loss_diverges():
    x, y = _small_problem()
    with pytest.warns(RuntimeWarning, match="diverged"):
        _, rec = fit_sgd(TwoLayerNet.random(4, 2, seed=1, dtype=torch.float64), x, y, steps=200, lr=1e4, seed=0)
    losses = rec.info["losses"]
    assert not math.isfinite(losses[-1])
    assert not rec.converged


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.1), ("adam", 1e-2)])
def test_fit_sgd_decreases_loss(optimizer, lr):
    x, y = _small_problem()
    net = TwoLayerNet.random(4, 2, seed=1, dtype=torch.float64)
    mse = lambda: float(((net(x) - y) ** 2).mean())
    with torch.no_grad(): before = mse()
    net_out, rec = fit_sgd(net, x, y, steps=300, lr=lr, batch_size=64, seed=0, optimizer=optimizer)
    losses = rec.info["losses"]
    assert net_out is net and rec.converged and rec.n_iter == len(rec.errors) == 300
    with torch.no_grad(): after = mse()
    assert len(losses) == 300 and all(math.isfinite(v) for v in losses)
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fit_sgd_steps_are_the_named_optimizer(optimizer):
    # two steps by hand on the same mini-batches: plain SGD (no momentum) and Adam with torch's default betas/eps
    x, y = _small_problem()
    net = TwoLayerNet.random(4, 2, seed=1, dtype=torch.float64)
    ref = [p.detach().clone() for p in TwoLayerNet.random(4, 2, seed=1, dtype=torch.float64).parameters()]
    lr, bs, (b1, b2, eps) = 0.05, 32, (0.9, 0.999, 1e-8)
    g = _gen(3)
    m, v = [torch.zeros_like(p) for p in ref], [torch.zeros_like(p) for p in ref]
    for t in (1, 2):
        idx = torch.randint(0, x.shape[0], (bs,), generator=g)
        params = [p.requires_grad_() for p in ref]
        A1, c1, a2, c2 = params                                  # registration order of TwoLayerNet (tanh)
        out = torch.tanh(x[idx] @ A1.mT + c1) @ a2 + c2
        grads = torch.autograd.grad(((out - y[idx]) ** 2).mean(), params)
        with torch.no_grad():
            for i, (p, gr) in enumerate(zip(params, grads)):
                if optimizer == "sgd":
                    step = gr
                else:
                    m[i] = b1 * m[i] + (1 - b1) * gr
                    v[i] = b2 * v[i] + (1 - b2) * gr ** 2
                    step = (m[i] / (1 - b1 ** t)) / ((v[i] / (1 - b2 ** t)).sqrt() + eps)
                ref[i] = (p - lr * step).detach()
    fit_sgd(net, x, y, steps=2, lr=lr, batch_size=bs, seed=3, optimizer=optimizer)
    for (name, p), q in zip(net.named_parameters(), ref):
        assert_close(p.detach(), q, rtol=1e-10, atol=1e-12, msg=name)


# ---------------------------------------------------------------- GPU
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_stein_and_derivatives():
    g = _gen(7)
    x = torch.randn(5000, 5, generator=g, dtype=torch.float64)
    y = torch.tanh(x @ torch.randn(5, generator=g, dtype=torch.float64))
    W = torch.randn(5, 3, generator=g, dtype=torch.float64)
    cpu = stein_moment(x, y, 3, project=W)
    gpu = stein_moment(x.cuda(), y.cuda(), 3, project=W.cuda())
    assert gpu.device.type == "cuda"
    assert_close(gpu.cpu(), cpu, rtol=1e-10, atol=1e-12)
    f = lambda v: torch.tanh(v).sum()
    assert derivative_tensor(f, x[:10].cuda(), 3).device.type == "cuda"


# ---------------------------------------------------------------- exact Hermite coefficients of non-smooth activations
def _half_line(k, weight):
    "E[weight(z) He_k(z)] / sqrt(k!) for weight supported on z >= 0, by SciPy's adaptive quadrature."
    import warnings
    from scipy import integrate
    from scipy.special import eval_hermitenorm
    f = lambda t: weight(t) * eval_hermitenorm(k, t) * math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        return integrate.quad(f, 0, math.inf, epsabs=1e-14, epsrel=1e-13, limit=200)[0] / math.sqrt(math.factorial(k))


def test_hermite_coefficients_of_nonsmooth_activations_are_exact():
    "On main, hermite_coefficients('relu', k) was off by 1.4e-3 (120 Gauss-Hermite nodes across the kink)."
    ks = range(15)
    relu = torch.tensor([_half_line(k, lambda t: t) for k in ks], dtype=torch.float64)
    step = torch.tensor([_half_line(k, lambda t: 1.0) for k in ks], dtype=torch.float64)
    e0, e1 = (torch.arange(15) == 0).double(), (torch.arange(15) == 1).double()
    for name, ref in (("relu", relu), ("step", step), ("sign", 2 * step - e0), ("abs", 2 * relu - e1)):
        assert_close(hermite_coefficients(name, 14), ref, rtol=0, atol=1e-10)
    # Parseval: sum c_k^2 -> E[sigma^2] (1/2 for relu, 1 for abs), with the slow tail of a kink
    c = hermite_coefficients("relu", 3000)
    assert abs(float((c ** 2).sum()) - 0.5) < 1e-4
    assert hermite_coefficients("relu", 0).shape == (1,) and hermite_coefficients("step", 1).shape == (2,)
    assert hermite_coefficients("relu", 4, dtype=torch.float32).dtype == torch.float32
    # the callable goes through quadrature, whose error at a kink is what the closed form removes
    assert float((hermite_coefficients(torch.relu, 8) - hermite_coefficients("relu", 8)).abs().max()) > 1e-4
    with pytest.raises(ValueError, match="^sigma"):
        hermite_coefficients("kink", 3)


# ---------------------------------------------------------------- Ge-Lee-Ma landscape design (issue 16)
def _orthonormal_relu_teacher(d, m, N, seed, a=None):
    g = _gen(seed)
    Bs = torch.linalg.qr(torch.randn(d, m, generator=g, dtype=torch.float64)).Q.mT
    a = torch.ones(m, dtype=torch.float64) if a is None else a
    X = torch.randn(N, d, generator=g, dtype=torch.float64)
    return Bs, a, X, torch.relu(X @ Bs.mT) @ a, g


def _G_closed_form(B, Bs, a, mu, lam):
    C = (Bs @ B.mT) ** 2
    return float((a * (C.sum(1) ** 2 - (C ** 2).sum(1) - mu * (C ** 2).sum(1))).sum()
                 + lam * ((B * B).sum(1) - 1).pow(2).sum())


def test_landscape_objective_estimates_the_tensor_form():
    from tensornn.derivatives import _remove_low_orders, landscape_objective
    a = torch.tensor([1.0, 0.5, 1.5], dtype=torch.float64)
    Bs, a, X, y, g = _orthonormal_relu_teacher(4, 3, 400_000, 0, a)
    yr = _remove_low_orders(X, y)                      # same expectation against S_4, far smaller variance
    assert float(yr.var()) < 0.1 * float(y.var())
    for B in (Bs, 1.2 * Bs, torch.randn(3, 4, generator=g, dtype=torch.float64)):
        est, ref = float(landscape_objective(B, X, yr, mu=0.2, lam=3.0)), _G_closed_form(B, Bs, a, 0.2, 3.0)
        assert abs(est - ref) < 0.05 * (1 + abs(ref)), (est, ref)
    # a wrong objective (no reward on the diagonal) is told apart
    assert abs(float(landscape_objective(Bs, X, yr, mu=0.0, lam=3.0)) - _G_closed_form(Bs, Bs, a, 0.2, 3.0)) > 0.3
    # the minimiser along b = t b*_i: t^2 = lam / (lam - mu a_i), the value there is below that at t = 1
    t2 = 3.0 / (3.0 - 0.2 * a)
    assert _G_closed_form(Bs * t2.sqrt()[:, None], Bs, a, 0.2, 3.0) < _G_closed_form(Bs, Bs, a, 0.2, 3.0)


def test_landscape_objective_is_differentiable_and_refuses_odd_activations():
    from tensornn.derivatives import landscape_objective
    _, _, X, y, g = _orthonormal_relu_teacher(4, 3, 500, 1)
    B = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    landscape_objective(B, X, y).backward()
    assert B.grad is not None and bool(torch.isfinite(B.grad).all())
    with pytest.raises(ValueError, match="c_4"):
        landscape_objective(B.detach(), X, y, activation="tanh")
    with pytest.raises(ValueError, match="B:"):
        landscape_objective(torch.zeros(3, 5, dtype=torch.float64), X, y)


def test_fit_landscape_designed_recovers_rows_where_squared_loss_fails():
    # seed 503 of the chapter's experiment family: the plain squared loss stops at a spurious minimum from this start
    from tensornn.derivatives import fit_landscape
    ok = {"designed": 0, "squared": 0}
    for s in (3, 4):
        Bs, _, X, y, g = _orthonormal_relu_teacher(8, 8, 20_000, 500 + s)
        B0 = torch.nn.functional.normalize(torch.randn(8, 8, generator=g, dtype=torch.float64), dim=1)
        for o in ok:
            net, rec = fit_landscape(X, y, 8, objective=o, init=B0)
            ok[o] += bool((matched_row_cosines(net.A1.detach(), Bs) > 0.95).all())
    assert ok["designed"] == 2 and ok["squared"] < 2


def test_fit_landscape_signs_and_output_layer():
    from tensornn.derivatives import fit_landscape
    Bs, _, X, y, g = _orthonormal_relu_teacher(4, 4, 20_000, 7)
    net, rec = fit_landscape(X, y, 4, seed=0)
    assert bool((matched_row_cosines(net.A1.detach(), Bs) > 0.98).all())
    assert bool(((net.A1.detach() @ Bs.mT).max(1).values > 0.98).all())     # right signs, not only right lines
    assert rec.final_error < 0.15 and bool((net.b1 == 0).all())
    net_raw, _ = fit_landscape(X, y, 4, seed=0, control_variate=False)      # the option is honoured
    assert not torch.equal(net_raw.A1, net.A1)


def test_fit_landscape_bad_inputs():
    from tensornn.derivatives import fit_landscape
    _, _, X, y, _ = _orthonormal_relu_teacher(4, 3, 200, 2)
    with pytest.raises(ValueError, match="n_hidden"):
        fit_landscape(X, y, 5)
    with pytest.raises(ValueError, match="objective"):
        fit_landscape(X, y, 3, objective="huber")
    with pytest.raises(ValueError, match="init"):
        fit_landscape(X, y, 3, init=torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="mu"):
        fit_landscape(X, y, 3, mu=-1.0)
    with pytest.raises(TypeError, match="dtype"):
        fit_landscape(X, y.float(), 3)


# ---------------------------------------------------------------- moment initialisation then gradient descent
def test_nnlift_then_sgd_improves_on_the_moment_estimate():
    from tensornn.derivatives import nnlift_then_sgd
    g = _gen(1)
    truth = TwoLayerNet.random(6, 3, generator=g, dtype=torch.float64)
    X = torch.randn(60_000, 6, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = truth(X)
    lift, _ = nnlift(X, y, 3, seed=0)
    net, rec = nnlift_then_sgd(X, y, 3, steps=300, seed=0)
    Xt = torch.randn(5_000, 6, generator=g, dtype=torch.float64)
    with torch.no_grad():
        e_lift = float((lift(Xt) - truth(Xt)).norm() / truth(Xt).norm())
        e_ms = float((net(Xt) - truth(Xt)).norm() / truth(Xt).norm())
    assert e_ms < e_lift and "nnlift" in rec.info and rec.n_iter == 300
    assert bool((matched_row_cosines(net.A1.detach(), truth.A1.detach()) > 0.99).all())


def test_nnlift_then_sgd_bad_inputs():
    from tensornn.derivatives import nnlift_then_sgd
    X, y = torch.randn(100, 3, dtype=torch.float64), torch.randn(100, dtype=torch.float64)
    with pytest.raises(ValueError, match="n_hidden"):
        nnlift_then_sgd(X, y, 4)
    with pytest.raises(ValueError, match="optimizer"):
        nnlift_then_sgd(X, y, 2, optimizer="lbfgs")


# ---------------------------------------------------------------- robustness: which derivative order to trust
def test_subspace_distance_properties():
    from tensornn.derivatives import subspace_distance
    g = _gen(3)
    U = torch.randn(6, 2, generator=g, dtype=torch.float64)
    M = torch.randn(2, 2, generator=g, dtype=torch.float64)
    assert subspace_distance(U, U @ M) < 1e-12                         # a change of basis is no change
    Q = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64)).Q
    for t in (0.1, 0.7, 1.3):                                           # a rotation by t in one plane
        V = Q[:, :2].clone()
        V[:, 0] = math.cos(t) * Q[:, 0] + math.sin(t) * Q[:, 2]
        assert abs(subspace_distance(Q[:, :2], V) - math.sin(t)) < 1e-12
    assert abs(subspace_distance(Q[:, :2], Q[:, 2:3]) - 1.0) < 1e-12   # orthogonal direction
    with pytest.raises(ValueError, match="V:"):
        subspace_distance(U, torch.zeros(5, 2, dtype=torch.float64))


def test_weights_from_third_derivative_exact_and_less_robust_than_spans():
    from tensornn.derivatives import weights_from_third_derivative
    g = _gen(8)
    A = torch.nn.functional.normalize(torch.randn(3, 8, generator=g, dtype=torch.float64), dim=1)
    b = 0.3 * torch.randn(3, generator=g, dtype=torch.float64)
    X = torch.randn(200, 8, generator=g, dtype=torch.float64)
    W = 3.0 * torch.randn(20, 8, generator=g, dtype=torch.float64)
    c = torch.randn(20, generator=g, dtype=torch.float64) / math.sqrt(20)
    f0 = lambda v: torch.tanh(A @ v + b).sum()
    A3, lam = weights_from_third_derivative(f0, X, 3, seed=0)
    assert bool((matched_row_cosines(A3, A) > 1 - 1e-9).all()) and lam.shape == (3,)
    f = lambda v: f0(v) + 1e-3 * (c * torch.cos(W @ v)).sum()
    err = lambda Ah: float((1 - matched_row_cosines(Ah, A) ** 2).clamp_min(0).sqrt().mean())
    e3, e12 = err(weights_from_third_derivative(f, X, 3, seed=0)[0]), err(weights_from_spans(f, X, 3, seed=0)[0])
    assert e3 > 2 * e12 > 0
    with pytest.raises(ValueError, match="f:"):
        weights_from_third_derivative(lambda v: torch.tanh(A @ v), X, 3)
    with pytest.raises(ValueError, match="method"):
        weights_from_third_derivative(f0, X, 3, method="als")


# ---------------------------------------------------------------- ReLU with biases from Hermite ratios
def test_relu_net_from_moments_recovers_signed_rows_biases_and_output_weights():
    from tensornn.derivatives import relu_net_from_moments
    g = _gen(12)
    W = torch.nn.functional.normalize(torch.randn(3, 5, generator=g, dtype=torch.float64), dim=1)
    b = torch.tensor([0.8, -1.1, 0.6], dtype=torch.float64)
    a = torch.tensor([-1.0, 1.3, 0.9], dtype=torch.float64)
    X = torch.randn(200_000, 5, generator=g, dtype=torch.float64)
    net = relu_net_from_moments(X, torch.relu(X @ W.mT + b) @ a, 3, seed=0)
    _, perm = factor_match_score([W.mT], [net.A1.detach().mT])
    assert bool(((W * net.A1.detach()[perm]).sum(1) > 0.99).all())        # signs right, not only lines
    assert float((net.b1.detach()[perm] - b).abs().max()) < 0.2
    assert float((net.a2.detach()[perm] - a).abs().max()) < 0.2
    # flipping every neuron to (-w, -b, a) changes y by a linear function: the sign step must notice
    net_f = relu_net_from_moments(X, torch.relu(-(X @ W.mT + b)) @ a, 3, seed=0)
    _, perm_f = factor_match_score([W.mT], [net_f.A1.detach().mT])
    assert bool(((W * net_f.A1.detach()[perm_f]).sum(1) < -0.99).all())


def test_relu_net_from_moments_bad_inputs():
    from tensornn.derivatives import relu_net_from_moments
    X, y = torch.randn(100, 3, dtype=torch.float64), torch.randn(100, dtype=torch.float64)
    with pytest.raises(ValueError, match="n_hidden"):
        relu_net_from_moments(X, y, 4)
    with pytest.raises(ValueError, match="y:"):
        relu_net_from_moments(X, y[:5], 2)
    with pytest.raises(TypeError, match="dtype"):
        relu_net_from_moments(X, y.float(), 2)


# ---------------------------------------------------------------- Ge-Lee-Ma: the landscape claim for our constants
def _closed_form_G_ends(sign, n_starts, seed=21, d=5, mu=0.1, lam=10.0):
    from tensornn.derivatives import _lbfgs
    g = _gen(seed)
    Bs = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64)).Q.mT
    a = 0.5 + torch.rand(d, generator=g, dtype=torch.float64)
    t2 = lam / (lam - mu * a)
    G_min = float((-mu * a * t2 ** 2 + lam * (t2 - 1) ** 2).sum())
    ends = []
    for _ in range(n_starts):
        B = torch.randn(d, d, generator=g, dtype=torch.float64).requires_grad_(True)
        def G():
            C = (Bs @ B.mT) ** 2
            return (sign * (a * (C.sum(1) ** 2 - (C ** 2).sum(1))).sum() - mu * (a * (C ** 2).sum(1)).sum()
                    + lam * ((B * B).sum(1) - 1).pow(2).sum())
        vals = _lbfgs([B], G, 500)
        ends.append((vals[-1] - G_min, float(matched_row_cosines(B.detach(), Bs).min()),
                     B.detach().norm(dim=1)))
    return ends, t2


def test_designed_objective_local_minima_are_global_for_our_constants():
    ends, t2 = _closed_form_G_ends(1.0, 12)
    for gap, cos, norms in ends:
        assert gap < 1e-9 and cos > 1 - 1e-9                     # the global minimum, rows on B*'s rows
        # row norms are the predicted t_i = sqrt(lam / (lam - mu a_i)), in some order
        assert_close(norms.sort().values, t2.sqrt().sort().values, rtol=1e-6, atol=1e-8)
    # the control: rewarding shared components (cross terms flipped) is NOT benign, and the check sees it
    bad, _ = _closed_form_G_ends(-1.0, 4)
    assert all(cos < 0.99 for _, cos, _ in bad)


# ---------------------------------------------------------------- three layers, scalar output: review eq. (15)
@pytest.mark.parametrize("s1,s2", [("tanh", "tanh"), ("sigmoid", torch.nn.functional.softplus), ("cube", "tanh")])
def test_three_layer_hessian_terms_match_torch_func(s1, s2):
    from tensornn.derivatives import three_layer_hessian_terms
    from tensornn.expressivity import get_activation
    g = _gen(3)
    A1, A2 = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g, dtype=torch.float64)
    a3, X = torch.randn(2, generator=g, dtype=torch.float64), 0.5 * torch.randn(20, 5, generator=g, dtype=torch.float64)
    S1, S2 = get_activation(s1), get_activation(s2)
    terms = three_layer_hessian_terms(A1, A2, a3, X, sigma1=s1, sigma2=s2)
    H = derivative_tensor(lambda v: a3 @ S2(A2 @ S1(A1 @ v)), X, 2)
    assert_close(terms.hessians(), H)
    assert terms.gamma.shape == (20, 3) and terms.eta.shape == (20, 2) and terms.V.shape == (20, 2, 5)
    # the moving vectors lie in the row space of A1, and v_j(x) = A1^T diag(sigma1'(A1 x)) a2_j
    P = A1.mT @ torch.linalg.pinv(A1.mT)
    assert_close(terms.V @ P, terms.V)
    # leaving out the moving terms is wrong: they are a large part of the Hessian
    fixed = torch.einsum("ni,ia,ib->nab", terms.gamma, A1, A1)
    assert float((fixed - H).norm()) > 0.05 * float(H.norm())


def test_three_layer_hessians_concentrate_on_the_fixed_subspace_near_zero():
    from tensornn.derivatives import three_layer_hessian_terms
    g = _gen(15)
    A1 = torch.nn.functional.normalize(torch.randn(4, 6, generator=g, dtype=torch.float64), dim=1)
    A2, a3 = torch.randn(2, 4, generator=g, dtype=torch.float64), torch.randn(2, generator=g, dtype=torch.float64)
    f = lambda v: a3 @ torch.tanh(A2 @ torch.tanh(A1 @ v))
    V0 = three_layer_hessian_terms(A1, A2, a3, torch.zeros(1, 6, dtype=torch.float64)).V[0]
    R_two = torch.stack([torch.outer(a, a).reshape(-1) for a in A1], 1)
    R_S = torch.cat([R_two, torch.stack([torch.outer(v, v).reshape(-1) for v in V0], 1)], 1)
    def share(H, R):
        Q, Hv = torch.linalg.qr(R).Q, H.reshape(H.shape[0], -1)
        return float(((Hv - Hv @ Q @ Q.mT).norm(dim=1) / Hv.norm(dim=1)).median())
    out = {s: derivative_tensor(f, s * torch.randn(60, 6, generator=g, dtype=torch.float64), 2) for s in (0.02, 0.2)}
    assert share(out[0.02], R_S) < 1e-3 and share(out[0.2], R_S) > 10 * share(out[0.02], R_S)   # about s^2
    assert share(out[0.02], R_two) > 0.3                                        # two-layer span is not enough


def test_three_layer_hessian_terms_bad_inputs():
    from tensornn.derivatives import three_layer_hessian_terms
    A1, A2, a3 = torch.randn(3, 4, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    X = torch.randn(5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="A2"):
        three_layer_hessian_terms(A1, A2, a3[:1], X)
    with pytest.raises(ValueError, match="a3"):
        three_layer_hessian_terms(A1, A2, a3[:, None], X)
    with pytest.raises(TypeError, match="A1"):
        three_layer_hessian_terms(A1.float(), A2, a3, X)
    with pytest.raises(ValueError, match="sigma2"):
        three_layer_hessian_terms(A1, A2, a3, X, sigma2="gelu?")
    with pytest.raises(ValueError, match="points"):
        three_layer_hessian_terms(A1, A2, a3, X[0])


# ---------------------------------------------------------------- symmetric inputs (after Ge, Kuditipudi, Li & Wang 2019)
def _symmetric_teacher(seed, N, shift=0.0, k=3, d=5):
    g = _gen(seed)
    W = torch.nn.functional.normalize(torch.randn(k, d, generator=g, dtype=torch.float64), dim=1)
    A = torch.eye(k, dtype=torch.float64) + 0.5 * torch.randn(k, k, generator=g, dtype=torch.float64)
    X = (2 * torch.rand(N, d, generator=g, dtype=torch.float64) - 1) * math.sqrt(3) + shift     # uniform cube
    return W, A, X, torch.relu(X @ W.mT) @ A.mT


def test_relu_net_from_symmetric_moments_recovers_both_layers_on_non_gaussian_inputs():
    from tensornn.derivatives import relu_net_from_symmetric_moments
    W, A, X, Y = _symmetric_teacher(8, 300_000)
    W_hat, A_hat = relu_net_from_symmetric_moments(X, Y, seed=0)
    _, perm = factor_match_score([W.mT], [W_hat.mT])
    assert bool(((W * W_hat[perm]).sum(1) > 0.99).all())                         # signed: relu(-z) != relu(z)
    assert float((A_hat[:, perm] - A).norm() / A.norm()) < 0.1
    assert float((torch.relu(X @ W_hat.mT) @ A_hat.mT - Y).norm() / Y.norm()) < 0.05
    # the pure-neuron combinations: the true u_i u_i^T (u_i = A^{-T} e_i) lie in the estimated null space
    from tensornn.derivatives import _pure_neuron_null_space
    M = 2 * torch.linalg.solve(X.mT @ X / len(X), X.mT @ Y / len(X)).mT
    assert_close(M, A @ W, rtol=0, atol=0.05)                                     # E[y x^T] = A W E[x x^T] / 2
    B, S = _pure_neuron_null_space(X, Y, M, 50_000)
    P = torch.linalg.qr(B.reshape(3, -1).mT).Q
    for u in torch.linalg.inv(A).mT.mT:
        uu = torch.outer(u, u).reshape(-1)
        assert float((uu - P @ (P.mT @ uu)).norm() / uu.norm()) < 0.1
    assert float(S[-3]) < 0.1 * float(S[-4])                                      # a k-dimensional null space


def test_relu_net_from_symmetric_moments_needs_symmetry():
    from tensornn.derivatives import relu_net_from_symmetric_moments
    W, A, X, Y = _symmetric_teacher(8, 300_000, shift=0.5)                      # the same cube, shifted
    W_hat, _ = relu_net_from_symmetric_moments(X, Y, seed=0)
    assert float(matched_row_cosines(W_hat, W).min()) < 0.9


def test_relu_net_from_symmetric_moments_bad_inputs():
    from tensornn.derivatives import relu_net_from_symmetric_moments
    X, Y = torch.randn(100, 3, dtype=torch.float64), torch.randn(100, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="y:"):
        relu_net_from_symmetric_moments(X, Y[:, :1])
    with pytest.raises(ValueError, match="y:"):
        relu_net_from_symmetric_moments(X, torch.randn(100, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="y:"):
        relu_net_from_symmetric_moments(X, Y[:50])
    with pytest.raises(TypeError, match="dtype"):
        relu_net_from_symmetric_moments(X, Y.float())
    with pytest.raises(ValueError, match="n_init"):
        relu_net_from_symmetric_moments(X, Y, n_init=0)


# ---------------------------------------------------------------- coupling Jacobians and Hessians of three layers
def _three_layer_vector(seed, N):
    g = _gen(seed)
    A1, A2 = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g, dtype=torch.float64)
    A3, X = torch.randn(2, 2, generator=g, dtype=torch.float64), torch.randn(N, 5, generator=g, dtype=torch.float64)
    f = lambda v: A3 @ torch.tanh(A2 @ torch.tanh(A1 @ v))
    return A1, A2, A3, X, derivative_tensor(f, X, 1).permute(1, 2, 0), derivative_tensor(f, X, 2), g


def test_hessian_misfit_is_zero_for_true_factors_and_any_activation():
    from tensornn.derivatives import hessian_misfit
    A1, A2, A3, X, J, H, g = _three_layer_vector(0, 12)
    fac = three_layer_jacobian_factors(A1, A2, A3, X)
    assert hessian_misfit(fac, H) < 1e-12
    # a gauge change of the factors (scalings the Jacobians cannot see) keeps the misfit zero
    s = torch.tensor([2.0, -0.5, 3.0], dtype=torch.float64)
    fac_s = (fac[0], fac[1], fac[2], fac[3] / s, fac[4] * s)
    assert_close(paratuck2(*fac_s), paratuck2(*fac))
    assert hessian_misfit(fac_s, H) < 1e-12
    # the second layer's activation is not needed: the same holds for a softplus network
    f = lambda v: A3 @ torch.nn.functional.softplus(A2 @ torch.tanh(A1 @ v))
    fac_p = three_layer_jacobian_factors(A1, A2, A3, X, sigma2=torch.nn.functional.softplus)
    assert hessian_misfit(fac_p, derivative_tensor(f, X, 2)) < 1e-12
    # a wrong first layer with the rest unchanged is rejected
    assert hessian_misfit((fac[0], fac[1], fac[2], fac[3], fac[4] + 0.1), H) > 1e-3


def test_hessians_reject_exact_but_wrong_jacobian_fits_with_few_points():
    from tensornn.derivatives import hessian_misfit
    A1, A2, A3, X, J, H, g = _three_layer_vector(2, 3)          # 3 points: the Jacobians do not fix the layers
    wrong = 0
    for _ in range(4):
        fac, rec = fit_paratuck2(J, 2, 3, n_init=1, generator=g)
        sin = float((1 - matched_row_cosines(fac[4].mT, A1) ** 2).clamp_min(0).sqrt().max())
        if rec.errors[-1] < 1e-10 and sin > 1e-2:
            wrong += 1
            assert hessian_misfit(fac, H) > 1e-4
    assert wrong >= 1


def test_hessian_misfit_bad_inputs():
    from tensornn.derivatives import hessian_misfit
    A1, A2, A3, X, J, H, g = _three_layer_vector(0, 4)
    fac = three_layer_jacobian_factors(A1, A2, A3, X)
    with pytest.raises(TypeError, match="factors"):
        hessian_misfit(fac[:4], H)
    with pytest.raises(ValueError, match="hessians"):
        hessian_misfit(fac, H[:, :1])
    with pytest.raises(ValueError, match="hessians"):
        hessian_misfit(fac, H[0])
    with pytest.raises(TypeError, match="dtype"):
        hessian_misfit(fac, H.float())



# ---------------------------------------------------------------- the coupled search (variable projection)
def _max_sin(B, A1):
    return float((1 - matched_row_cosines(B.mT, A1) ** 2).clamp_min(0).sqrt().max())


def test_coupled_fit_recovers_the_first_layer_where_the_jacobians_cannot():
    from tensornn.derivatives import fit_coupled_derivatives, hessian_misfit
    A1, A2, A3, X, J, H, g = _three_layer_vector(2, 3)          # 3 points: exact Jacobian fits with wrong layers exist
    Jn = J.permute(2, 0, 1)                                      # (N, d_out, d_in)
    fac_j, rec_j = fit_paratuck2(J, 2, 3, n_init=20, n_iter=50, seed=2)
    assert rec_j.errors[-1] < 1e-9 and _max_sin(fac_j[4], A1) > 1e-2          # Jacobians alone: fitted, but wrong
    fac_c, rec_c = fit_coupled_derivatives(Jn, H, 3, 2, n_init=20, seed=2)     # the same starts, with the Hessians
    assert rec_c.converged and _max_sin(fac_c[4], A1) < 1e-6
    assert rec_c.info["jacobian_error"] < 1e-9 and hessian_misfit(fac_c, H) < 1e-9
    assert_close(paratuck2(*fac_c), J)
    # the Hessian term is what identifies the layer: with weight 0 the same search stops at a wrong exact Jacobian fit
    fac_0, rec_0 = fit_coupled_derivatives(Jn, H, 3, 2, weight=0.0, n_init=20, seed=2)
    assert rec_0.errors[-1] < 1e-9 and _max_sin(fac_0[4], A1) > 1e-2 and hessian_misfit(fac_0, H) > 1e-4


def test_coupled_residual_vanishes_at_the_truth_only():
    from tensornn.derivatives import _hessian_columns, _projected_residual
    A1, A2, A3, X, J, H, g = _three_layer_vector(0, 4)
    h = H.reshape(4, -1)
    true = three_layer_jacobian_factors(A1, A2, A3, X)
    assert float(_projected_residual(_hessian_columns(*true), h).norm() / h.norm()) < 1e-12
    s = torch.tensor([2.0, -0.5, 3.0], dtype=torch.float64)                    # a gauge change: still zero
    gauged = (true[0], true[1], true[2], true[3] / s, true[4] * s)
    assert float(_projected_residual(_hessian_columns(*gauged), h).norm() / h.norm()) < 1e-12
    wrong = (true[0], true[1], true[2], true[3], true[4] + 0.05 * torch.randn(5, 3, generator=g, dtype=torch.float64))
    assert float(_projected_residual(_hessian_columns(*wrong), h).norm() / h.norm()) > 1e-3


def test_projected_residual_matches_lstsq_and_finite_differences():
    from tensornn.derivatives import _hessian_columns, _projected_residual
    g = _gen(7)
    F, h = torch.randn(3, 10, 4, generator=g, dtype=torch.float64), torch.randn(3, 10, generator=g, dtype=torch.float64)
    Fd = torch.cat([F[..., :2], 2 * F[..., :1], torch.zeros_like(F[..., :1])], -1)       # rank-deficient columns
    for M in (F, Fd):
        ref = h - (M @ torch.linalg.lstsq(M, h[..., None], driver="gelsd").solution)[..., 0]
        assert_close(_projected_residual(M, h), ref, atol=1e-10, rtol=0)
    Fn = Fd[..., :3] + 1e-3 * torch.randn(3, 10, 3, generator=g, dtype=torch.float64)   # nearly rank-deficient
    for M in (F, Fn):
        assert torch.autograd.gradcheck(_projected_residual, (M.clone().requires_grad_(), h.clone().requires_grad_()))
    # through the Hessian columns: jacfwd (what the fit uses) against central differences in the Paratuck-2 parameters
    A1, A2, A3, X, J, H, _ = _three_layer_vector(1, 3)
    fac = three_layer_jacobian_factors(A1, A2, A3, X)
    shapes = [tuple(f.shape) for f in fac]
    theta = torch.cat([f.reshape(-1) for f in fac]) + 0.1 * torch.randn(sum(f.numel() for f in fac), generator=g,
                                                                          dtype=torch.float64)
    unpack = lambda t: [c.reshape(s) for c, s in zip(torch.split(t, [math.prod(s) for s in shapes]), shapes)]
    r = lambda t: _projected_residual(_hessian_columns(*unpack(t)), H.reshape(3, -1)).reshape(-1)
    Jr, eps = torch.func.jacfwd(r)(theta), 1e-6
    E = torch.eye(len(theta), dtype=torch.float64)
    fd = torch.stack([(r(theta + eps * e) - r(theta - eps * e)) / (2 * eps) for e in E], 1)
    assert_close(Jr, fd, atol=1e-6 * float(Jr.abs().max()), rtol=0)


def test_fit_coupled_derivatives_bad_inputs_and_warning():
    from tensornn.derivatives import fit_coupled_derivatives
    A1, A2, A3, X, J, H, g = _three_layer_vector(0, 3)
    Jn = J.permute(2, 0, 1)
    with pytest.raises(ValueError, match="hessians"):
        fit_coupled_derivatives(Jn, H[:, :1], 3, 2)
    with pytest.raises(ValueError, match="jacobians"):
        fit_coupled_derivatives(Jn[0], H, 3, 2)
    with pytest.raises(ValueError, match="d1"):
        fit_coupled_derivatives(Jn, H, 6, 2)
    with pytest.raises(ValueError, match="d2"):
        fit_coupled_derivatives(Jn, H, 3, 0)
    with pytest.raises(TypeError, match="dtype"):
        fit_coupled_derivatives(Jn, H.float(), 3, 2)
    with pytest.raises(ValueError, match="weight"):
        fit_coupled_derivatives(Jn, H, 3, 2, weight=-1.0)
    with pytest.raises(ValueError, match="hessians"):
        fit_coupled_derivatives(Jn, H * float("nan"), 3, 2)
    with pytest.raises(ValueError, match="n_init"):
        fit_coupled_derivatives(Jn, H, 3, 2, n_init=0)
    with pytest.warns(RuntimeWarning, match="no start converged"):
        (fac, rec) = fit_coupled_derivatives(Jn, H, 3, 2, n_init=1, n_iter=2, n_polish=0, seed=0)
    assert not rec.converged and len(fac) == 5 and rec.n_iter == len(rec.errors)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_symmetric_moments_hessian_terms_and_misfit():
    from tensornn.derivatives import hessian_misfit, relu_net_from_symmetric_moments, three_layer_hessian_terms
    W, A, X, Y = _symmetric_teacher(8, 200_000)
    W_g, A_g = relu_net_from_symmetric_moments(X.cuda(), Y.cuda(), seed=0)
    assert W_g.device.type == "cuda" and A_g.device.type == "cuda"
    assert float(matched_row_cosines(W_g.cpu(), W).min()) > 0.99
    A1, A2, A3, Xv, J, H, g = _three_layer_vector(0, 12)
    terms = three_layer_hessian_terms(A1.cuda(), A2.cuda(), A3[0].cuda(), Xv.cuda())
    assert terms.hessians().device.type == "cuda"
    assert_close(terms.hessians().cpu(), three_layer_hessian_terms(A1, A2, A3[0], Xv).hessians())
    fac = three_layer_jacobian_factors(A1.cuda(), A2.cuda(), A3.cuda(), Xv.cuda())
    assert hessian_misfit(fac, H.cuda()) < 1e-10


# ---------------------------------------------------------------- convolutional networks by moments (issue 16)
from hypothesis import given, settings, strategies as st

from tensornn.derivatives import NonOverlappingCNN, cnn_kernels_from_moments


def _leaky(a):
    return lambda z: torch.nn.functional.leaky_relu(z, a)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cnn_forward_is_conv1d_and_rank_one_when_linear(dtype):
    net = NonOverlappingCNN.random((3, 2, 4), activation="identity", seed=0, dtype=dtype)
    k1, k2, k3 = [k.detach() for k in net.kernels]
    x = torch.randn(7, 24, generator=_gen(1), dtype=torch.float64).to(dtype)
    with torch.no_grad():
        assert_close(net(x), torch.einsum("nabc,a,b,c->n", x.reshape(7, 4, 2, 3), k3, k2, k1))
        relu = NonOverlappingCNN([k1, k2, k3], activation="relu")
        h = x[:, None]
        for k in (k1, k2, k3):
            h = torch.relu(torch.nn.functional.conv1d(h, k[None, None], stride=k.shape[0]))
        assert_close(relu(x), h[:, 0, 0])
    assert all(float(k.sum()) > 0 for k in (k2, k3))          # later kernels signed so a ReLU net is not silent


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(2, 4), min_size=1, max_size=4), seed=st.integers(0, 10_000), center=st.booleans())
def test_cnn_kernels_exact_from_the_population_moment_of_a_linear_network(sizes, seed, center):
    # +-sqrt(p) e_i has mean 0 and second moment I: the empirical E[y x] of a linear f is the population one
    net = NonOverlappingCNN.random(sizes, activation="identity", seed=seed, dtype=torch.float64)
    p = net.p
    E = math.sqrt(p) * torch.cat([torch.eye(p, dtype=torch.float64), -torch.eye(p, dtype=torch.float64)])
    with torch.no_grad():
        y = net(E)
    ks, rec = cnn_kernels_from_moments(E, y, sizes, center=center)
    assert len(ks) == len(sizes) and [k.shape[0] for k in ks] == list(sizes)
    for u, k in zip(ks, net.kernels):
        assert abs(float(u @ k.detach())) > 1 - 1e-10
        assert abs(float(u.norm()) - 1) < 1e-12 and float(u[u.abs().argmax()]) > 0
    assert rec.final_error < 1e-6                              # exactly rank one
    assert abs(abs(rec.info["weight"]) - 1) < 1e-10            # unit kernels: lambda = +-1


def test_cnn_moment_order_matters():
    # the kernels are read from x.reshape(k_D, ..., k_1): the reversed order must not fit a (4, 3) network
    net = NonOverlappingCNN.random((4, 3), activation="identity", seed=3, dtype=torch.float64)
    E = math.sqrt(12) * torch.cat([torch.eye(12, dtype=torch.float64), -torch.eye(12, dtype=torch.float64)])
    with torch.no_grad():
        y = net(E)
    wrong, rec = cnn_kernels_from_moments(E, y, (3, 4))
    assert rec.final_error > 0.1


def _cnn_sines(sizes, slope, Ns, seeds):
    out = {N: [] for N in Ns}
    for s in seeds:
        net = NonOverlappingCNN.random(sizes, activation=_leaky(slope), seed=100 + s, dtype=torch.float64)
        X = torch.randn(max(Ns), net.p, generator=_gen(200 + s), dtype=torch.float64)
        with torch.no_grad():
            y = net(X)
        for N in Ns:
            ks, _ = cnn_kernels_from_moments(X[:N], y[:N], sizes)
            out[N].append([math.sqrt(max(1 - float(u @ k.detach()) ** 2, 0)) for u, k in zip(ks, net.kernels)])
    return {N: torch.tensor(v).mean(0) for N, v in out.items()}     # mean sine per layer


def test_cnn_kernels_improve_with_N_for_a_mildly_nonlinear_activation():
    sin = _cnn_sines((4, 4, 4), 0.9, [2_000, 200_000], range(3))
    assert bool((sin[200_000] < sin[2_000] / 4).all()) and float(sin[200_000].max()) < 0.01


def test_cnn_relu_first_kernel_consistent_deeper_kernels_biased():
    sin = _cnn_sines((4, 4, 4), 0.0, [20_000, 200_000], range(3))
    assert float(sin[200_000][0]) < 0.01 and float(sin[200_000][0]) < float(sin[20_000][0]) / 2   # layer 1: exact in population
    assert float(sin[200_000][2]) > 0.03 and float(sin[200_000][2]) > 0.7 * float(sin[20_000][2])  # last layer: a bias


def test_cnn_kernels_from_moments_bad_inputs():
    X, y = torch.randn(30, 6, dtype=torch.float64), torch.randn(30, dtype=torch.float64)
    with pytest.raises(ValueError, match="kernel_sizes"):
        cnn_kernels_from_moments(X, y, (2, 2))
    with pytest.raises(TypeError, match="kernel_sizes"):
        cnn_kernels_from_moments(X, y, 6)
    with pytest.raises(ValueError, match="kernel_sizes"):
        cnn_kernels_from_moments(X, y, (6, 0))
    with pytest.raises(ValueError, match="y:"):
        cnn_kernels_from_moments(X, y[:5], (2, 3))
    with pytest.raises(TypeError, match="y"):
        cnn_kernels_from_moments(X, y.float(), (2, 3))
    with pytest.raises(ValueError, match="x"):
        cnn_kernels_from_moments(X[:, 0], y, (1,))
    with pytest.raises(ValueError, match="n_iter"):
        cnn_kernels_from_moments(X, y, (2, 3), n_iter=0)
    with pytest.raises(ValueError, match="vanishes"):
        cnn_kernels_from_moments(X, torch.ones(30, dtype=torch.float64), (2, 3))
    bad = X.clone(); bad[0, 0] = float("nan")
    with pytest.raises(ValueError):
        cnn_kernels_from_moments(bad, y, (2, 3))
    with pytest.raises(TypeError, match="kernels"):
        NonOverlappingCNN(torch.ones(3))
    with pytest.raises(TypeError, match=r"kernels\[1\]"):
        NonOverlappingCNN([torch.ones(2, dtype=torch.float64), torch.ones(3)])
    with pytest.raises(ValueError, match="x:"):
        NonOverlappingCNN([torch.ones(2), torch.ones(3)])(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="activation"):
        NonOverlappingCNN([torch.ones(2)], activation="swish?")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_cnn_kernels_from_moments():
    net = NonOverlappingCNN.random((4, 4, 4), activation="identity", seed=0, dtype=torch.float64, device="cuda")
    X = torch.randn(100_000, 64, dtype=torch.float64, device="cuda")
    with torch.no_grad():
        y = net(X)
    ks, rec = cnn_kernels_from_moments(X, y, (4, 4, 4))
    assert all(u.device.type == "cuda" for u in ks)
    assert all(abs(float(u @ k.detach())) > 0.99 for u, k in zip(ks, net.kernels))
