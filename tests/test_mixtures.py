"""Tests of tensornn.mixtures: the constants c_k, the moment identity, recovery of mixtures of classifiers and of
linear regressions, the likelihood baselines and bad input."""
import math

import pytest
import torch
from hypothesis import given, strategies as st

from tensornn.mixtures import (MixtureOfClassifiers, MixtureOfRegressions, compare_mixtures, conditional_moment,
                               fit_mixed_regression_em, fit_mixture_likelihood, learn_mixed_regression, learn_mixture,
                               max_components, mixture_from_moment, moment_constant)
from tensornn.testing import assert_close

pytestmark = pytest.mark.usefixtures("single_thread")


def _mixture(d, M, *, seed=0, jitter=0.25, weights=None, dtype=torch.float64):
    "Well-separated directions: a perturbed orthonormal set (M <= d) or Gaussian rows (M > d)."
    g = torch.Generator().manual_seed(seed)
    if M <= d:
        A = torch.linalg.qr(torch.randn(d, M, generator=g, dtype=torch.float64)).Q.mT
        A = A + jitter * torch.randn(M, d, generator=g, dtype=torch.float64)
    else:
        A = torch.randn(M, d, generator=g, dtype=torch.float64)
    w = torch.full((M,), 1 / M, dtype=torch.float64) if weights is None else torch.tensor(weights, dtype=torch.float64)
    return MixtureOfClassifiers(w.to(dtype), A.to(dtype)), g


# ---------------------------------------------------------------- c_k
@pytest.mark.parametrize("k", range(0, 10))
def test_moment_constant_matches_quadrature(k):
    from scipy import integrate
    from scipy.special import eval_hermitenorm
    if k == 0:
        assert moment_constant(0) == 1.0; return
    f = lambda t: eval_hermitenorm(k, t) * math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    q = 2 * integrate.quad(f, 0, math.inf, limit=200)[0]
    assert abs(moment_constant(k) - q) < 1e-7 * max(1, abs(q))
    assert (moment_constant(k) == 0) == (k % 2 == 0)


def test_moment_identity_within_monte_carlo_error():
    mix, g = _mixture(4, 3, weights=[0.5, 0.3, 0.2])
    x, y = mix.sample(200_000, generator=g)
    U = torch.randn(4, 2, generator=g, dtype=torch.float64)
    U = U / U.norm(dim=0)
    for k in (1, 3, 5):
        est = conditional_moment(x, y, k, project=U)
        exact = (mix.directions @ U).pow(k).mul(mix.weights[:, None]).sum(0) * moment_constant(k)   # T(u,...,u)
        t = x @ U
        h = [torch.ones_like(t), t]
        for m in range(1, k): h.append(t * h[m] - m * h[m - 1])
        se = ((2 * y - 1)[:, None] * h[k]).std(0) / math.sqrt(len(y))
        diag = torch.stack([est[(i,) * k] for i in range(2)])
        assert bool(((diag - exact).abs() < 5 * se).all()), (k, diag, exact, se)


def test_estimators_agree_with_dense_hermite_average():
    from tensornn.derivatives import hermite_score
    mix, g = _mixture(3, 2)
    x, y = mix.sample(500, generator=g)
    dense = ((2 * y - 1)[:, None, None, None] * hermite_score(x, 3)).mean(0)
    assert_close(conditional_moment(x, y, 3), dense)
    pos = hermite_score(x[y == 1], 3).mean(0)
    assert_close(conditional_moment(x, y, 3, estimator="conditional"), pos)


# ---------------------------------------------------------------- recovery
@given(d=st.integers(3, 6), M=st.integers(1, 3), seed=st.integers(0, 1000), order=st.sampled_from([3, 5]))
def test_exact_recovery_from_population_moments(d, M, seed, order):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(M, d, generator=g, dtype=torch.float64)
    w = torch.rand(M, generator=g, dtype=torch.float64) + 0.2
    mix = MixtureOfClassifiers(w / w.sum(), A)
    C = mix.directions @ mix.directions.mT - torch.eye(M, dtype=torch.float64)
    if M > 1 and float(C.abs().max()) > 0.95: return                    # nearly parallel: ill-conditioned, skip
    fit = mixture_from_moment(mix.moment(order), M, generator=g)
    m = compare_mixtures(fit, mix)
    assert m.min_cosine > 1 - 1e-6 and m.max_weight_error < 1e-6


def test_order5_recovers_more_components_than_dimension():
    mix, g = _mixture(3, 5, seed=3)
    assert max_components(3, 3) == 3 and max_components(3, 5) == 6
    m = compare_mixtures(mixture_from_moment(mix.moment(5), 5, generator=g), mix)
    assert m.min_cosine > 1 - 1e-6 and m.max_weight_error < 1e-6
    with pytest.raises(ValueError, match="n_components: the order-3 moment identifies at most 3.*order=5"):
        mixture_from_moment(mix.moment(3), 5)


def test_recovery_from_samples_at_stated_n():
    "d = 6, M = 3, weights (0.5, 0.3, 0.2), N = 100 000, seed 0: every cosine > 0.99 and weights within 0.02."
    mix, g = _mixture(6, 3, weights=[0.5, 0.3, 0.2])
    x, y = mix.sample(100_000, generator=g)
    m = compare_mixtures(learn_mixture(x, y, 3, generator=g), mix)
    assert m.min_cosine > 0.99 and m.max_weight_error < 0.02, m


def test_sign_is_resolved_from_the_data():
    mix, g = _mixture(5, 3, weights=[0.4, 0.35, 0.25])
    for truth in (mix, MixtureOfClassifiers(mix.weights, -mix.vectors),
                  MixtureOfClassifiers(mix.weights, mix.vectors * torch.tensor([[1.], [-1.], [1.]], dtype=torch.float64))):
        fit = mixture_from_moment(truth.moment(3), 3, generator=g)
        assert compare_mixtures(fit, truth).min_cosine > 0.999         # signed cosines: a flip would give -1


def test_weights_recovered_not_just_directions():
    "A wrong weight rule (e.g. uniform weights) must fail this test."
    mix, g = _mixture(4, 2, weights=[0.8, 0.2])
    fit = mixture_from_moment(mix.moment(3), 2, generator=g)
    m = compare_mixtures(fit, mix)
    assert_close(fit.weights[m.perm], mix.weights, rtol=1e-8, atol=1e-8)


# ---------------------------------------------------------------- baselines and regressions
def test_likelihood_fit_from_moment_start_improves_and_recovers():
    mix, g = _mixture(4, 2, weights=[0.6, 0.4])
    x, y = mix.sample(20_000, generator=g)
    init = learn_mixture(x, y, 2, generator=g)
    fit, rec = fit_mixture_likelihood(x, y, 2, init=init, steps=200, generator=g)
    assert rec.errors[-1] <= rec.errors[0]
    m = compare_mixtures(fit, mix)
    assert m.min_cosine > 0.99 and m.max_weight_error < 0.03


def _regression_mixture(d=5, M=3, seed=0, noise=0.1):
    g = torch.Generator().manual_seed(seed)
    A = 1.5 * torch.linalg.qr(torch.randn(d, M, generator=g, dtype=torch.float64)).Q.mT
    A = A + 0.3 * torch.randn(M, d, generator=g, dtype=torch.float64)
    return MixtureOfRegressions(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)[:M], A, noise=noise), g


def test_mixed_regression_population_moments_and_recovery():
    mix, g = _regression_mixture()
    x, y = mix.sample(300_000, generator=g)
    from tensornn.derivatives import stein_moment
    P3 = mix.moment(3)
    assert float((stein_moment(x, y ** 3, 3) - P3).norm() / P3.norm()) < 0.15
    mom = learn_mixed_regression(x, y, 3, generator=g)
    m_mom = compare_mixtures(mom, mix)
    assert m_mom.min_cosine > 0.97
    em, rec = fit_mixed_regression_em(x, y, 3, init=mom)
    m_em = compare_mixtures(em, mix)
    assert m_em.max_vector_error < 0.01 and m_em.max_weight_error < 0.01 and abs(em.noise - 0.1) < 0.01
    assert rec.converged


# ---------------------------------------------------------------- bad input
def test_bad_mixture_parameters_name_the_argument():
    A = torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="weights: expected mixture weights summing to 1"):
        MixtureOfClassifiers(torch.tensor([0.5, 0.4], dtype=torch.float64), A)
    with pytest.raises(ValueError, match="weights: expected nonnegative"):
        MixtureOfClassifiers(torch.tensor([1.5, -0.5], dtype=torch.float64), A)
    with pytest.raises(ValueError, match="vectors: expected nonzero rows"):
        MixtureOfClassifiers(torch.tensor([0.5, 0.5], dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="vectors: expected 2 rows"):
        MixtureOfClassifiers(torch.tensor([0.5, 0.5], dtype=torch.float64), A[:1])
    with pytest.raises(TypeError, match="weights: expected a torch.Tensor"):
        MixtureOfClassifiers([0.5, 0.5], A)
    with pytest.raises(ValueError, match="vectors: expected finite"):
        MixtureOfClassifiers(torch.tensor([0.5, 0.5], dtype=torch.float64), A * float("nan"))
    with pytest.raises(TypeError, match="vectors: expected dtype"):
        MixtureOfClassifiers(torch.tensor([0.5, 0.5], dtype=torch.float64), A.float())
    with pytest.raises(ValueError, match="noise"):
        MixtureOfRegressions(torch.tensor([0.5, 0.5], dtype=torch.float64), A, noise=-1.0)


def test_bad_learning_input_names_the_argument():
    mix, g = _mixture(3, 2)
    x, y = mix.sample(1000, generator=g)
    with pytest.raises(ValueError, match="y: expected binary labels"):
        learn_mixture(x, 2 * y - 1, 2)
    with pytest.raises(ValueError, match="y: expected shape"):
        learn_mixture(x, y[:10], 2)
    with pytest.raises(TypeError, match="y: expected a torch.Tensor"):
        learn_mixture(x, y.tolist(), 2)
    with pytest.raises(ValueError, match="n_components: the order-3 moment identifies at most 3"):
        learn_mixture(x, y, 4)
    with pytest.raises(ValueError, match="n_components: the order-5 moment identifies at most 6"):
        learn_mixture(x, y, 7, order=5)
    with pytest.raises(ValueError, match="n_components: expected a rank >= 1"):
        learn_mixture(x, y, 0)
    with pytest.raises(ValueError, match="order"):
        learn_mixture(x, y, 2, order=4)
    with pytest.raises(ValueError, match="x: expected finite"):
        learn_mixture(x * float("inf"), y, 2)
    with pytest.raises(ValueError, match="x: expected a 2-way"):
        learn_mixture(x[0], y, 2)
    with pytest.raises(ValueError, match="method"):
        learn_mixture(x, y, 2, method="svd")
    with pytest.raises(ValueError, match="T: expected a cubical tensor of order 3 or 5"):
        mixture_from_moment(torch.zeros(3, 3, dtype=torch.float64), 1)
    with pytest.raises(TypeError, match="k:"):
        moment_constant(1.5)
    with pytest.raises(ValueError, match="n_components"):
        learn_mixed_regression(x, y, 4)
    with pytest.raises(ValueError, match="init: expected"):
        fit_mixture_likelihood(x, y, 2, init=MixtureOfClassifiers(torch.ones(3, dtype=torch.float64) / 3,
                                                                  torch.randn(3, 3, dtype=torch.float64)))


def test_outputs_follow_input_dtype():
    mix, g = _mixture(4, 2, dtype=torch.float32)
    x, y = mix.sample(50_000, generator=g)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    fit = learn_mixture(x, y, 2, generator=g)
    assert fit.weights.dtype == torch.float32 and fit.vectors.dtype == torch.float32
    assert compare_mixtures(fit, mix).min_cosine > 0.98


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_learn_mixture_on_gpu():
    mix, g = _mixture(6, 3, weights=[0.5, 0.3, 0.2])
    x, y = mix.sample(100_000, generator=g, device="cuda")
    fit = learn_mixture(x, y, 3, generator=g)
    assert fit.vectors.device.type == "cuda"
    m = compare_mixtures(fit, MixtureOfClassifiers(mix.weights.cuda(), mix.vectors.cuda()))
    assert m.min_cosine > 0.99 and m.max_weight_error < 0.02
    em, _ = fit_mixture_likelihood(x, y, 3, init=fit, steps=50, generator=g)
    assert em.vectors.device.type == "cuda"


# ---------------------------------------------------------------- one symmetric CP (theory.symmetric_cp) for both orders
@pytest.mark.parametrize("order", [3, 5])
def test_power_method_at_both_orders_and_its_limit(order):
    "Both methods go through theory.symmetric_cp: the power method now also decomposes order 5 (M <= d)."
    mix, g = _mixture(5, 3, seed=7, weights=[0.5, 0.3, 0.2])
    for method in ("jennrich", "power"):
        fit = mixture_from_moment(mix.moment(order), 3, method=method, generator=g)
        m = compare_mixtures(fit, mix)
        assert m.min_cosine > 1 - 1e-8 and m.max_weight_error < 1e-8, (order, method)
    big, _ = _mixture(3, 5, seed=1)
    with pytest.raises(ValueError, match=r"^method: the power method finds at most d = 3"):
        mixture_from_moment(big.moment(5), 5, method="power")
    assert compare_mixtures(mixture_from_moment(big.moment(5), 5, generator=g), big).min_cosine > 1 - 1e-8


def test_no_private_names_from_other_modules():
    import ast, inspect
    import tensornn.mixtures as Mx
    tree = ast.parse(inspect.getsource(Mx))
    private = [a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for a in node.names if a.name.startswith("_")]
    assert private == [], private
