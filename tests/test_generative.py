"""tensornn.generative: HMMs as nonnegative tensor trains (against brute force and hmmlearn), sampling, learning
(EM monotone, moment methods consistent), and bad input."""
from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, strategies as st

from conftest import TOL
from tensornn import generative as G
from tensornn.formats import TTTensor
from tensornn.testing import assert_close

pytestmark = [pytest.mark.usefixtures("single_thread")]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def brute_force(p: G.HMMParams, d: int) -> torch.Tensor:
    "p(x) by summing over every hidden path: an independent oracle for tiny models."
    P = torch.zeros((p.n_symbols,) * d, dtype=p.dtype)
    for hs in itertools.product(range(p.n_states), repeat=d):
        w = p.initial[hs[0]]
        for a, b in zip(hs, hs[1:]): w = w * p.transition[a, b]
        term = p.emission[hs[0]]
        for h in hs[1:]: term = term[..., None] * p.emission[h]
        P += w * term
    return P


@given(H=st.integers(1, 3), V=st.integers(1, 4), d=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_hmm_tt_equals_brute_force_and_sums_to_one(H, V, d, seed):
    g = torch.Generator().manual_seed(seed)
    p = G.random_hmm(H, V, generator=g, dtype=torch.float64)
    tt = G.hmm_to_tt(p, d)
    assert isinstance(tt, TTTensor) and max(tt.rank) <= H
    assert all(bool((c >= 0).all()) for c in tt.cores)
    full = tt.full()
    assert_close(full, brute_force(p, d), **TOL[torch.float64])
    assert_close(full.sum(), torch.tensor(1.0, dtype=torch.float64), **TOL[torch.float64])
    assert_close(G.hmm_to_tt(*p, d).full(), full)                      # positional arrays, same tensor


@given(d=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_log_likelihood_equals_entries(d, seed):
    g = torch.Generator().manual_seed(seed)
    p = G.random_hmm(3, 4, generator=g, dtype=torch.float64)
    X = torch.randint(0, 4, (9, d), generator=g)
    want = G.hmm_to_tt(p, d).full()[tuple(X.T)].log()
    assert_close(G.log_likelihood(p, X), want, **TOL[torch.float64])
    assert_close(G.log_likelihood(G.hmm_to_tt(p, d), X), want, **TOL[torch.float64])


def test_zero_probability_is_minus_infinity_not_nan():
    p = G.HMMParams(torch.tensor([1.0, 0.0], dtype=torch.float64), torch.eye(2, dtype=torch.float64),
                    torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    ll = G.log_likelihood(p, torch.tensor([[0, 0, 0], [0, 1, 0]]))
    assert ll[0] == 0 and ll[1] == float("-inf")


@pytest.mark.parametrize("H, V, d", [(1, 3, 50), (3, 5, 200), (6, 10, 1000)])
def test_matches_hmmlearn_score(H, V, d):
    hmm = pytest.importorskip("hmmlearn.hmm")
    g = torch.Generator().manual_seed(H * 100 + d)
    p = G.random_hmm(H, V, generator=g, dtype=torch.float64)
    X = G.sample_hmm(p, 12, d, generator=g)
    ref = hmm.CategoricalHMM(n_components=H, n_features=V)
    ref.startprob_, ref.transmat_, ref.emissionprob_ = (t.numpy() for t in p)
    theirs = ref.score(X.reshape(-1, 1).numpy(), lengths=[d] * 12)
    ours = float(G.log_likelihood(p, X).sum())
    assert abs(ours - theirs) <= 1e-8 * abs(theirs)
    assert abs(float(G.log_likelihood(G.hmm_to_tt(p, d), X).sum()) - theirs) <= 1e-8 * abs(theirs)


def test_long_sequences_do_not_underflow():
    g = torch.Generator().manual_seed(0)
    p = G.random_hmm(4, 30, generator=g, dtype=torch.float64)
    X = G.sample_hmm(p, 4, 1000, generator=g)
    ll = G.log_likelihood(p, X)
    assert bool(torch.isfinite(ll).all()) and bool((ll < -1000).all())
    ll32 = G.log_likelihood(p.to(torch.float32), X)
    assert bool(torch.isfinite(ll32).all())
    assert_close(ll32.double(), ll, rtol=1e-4, atol=0.0)


def _chi2_pvalue(samples, probs):
    from scipy.stats import chisquare
    V, d = probs.shape[0], probs.ndim
    flat = torch.zeros(samples.shape[0], dtype=torch.long)
    for k in range(d): flat = flat * V + samples[:, k]
    counts = torch.bincount(flat, minlength=V ** d).double()
    return chisquare(counts.numpy(), (probs.reshape(-1) * samples.shape[0]).numpy()).pvalue


@pytest.mark.parametrize("sampler", ["ancestral", "tt"])
def test_sampling_passes_chi_square_and_can_fail(sampler):
    g = torch.Generator().manual_seed(5)
    p = G.random_hmm(2, 3, generator=g, dtype=torch.float64)
    tt = G.hmm_to_tt(p, 3)
    S = G.sample_hmm(p, 30_000, 3, generator=g) if sampler == "ancestral" else G.sample_tt(tt, 30_000, generator=g)
    assert S.shape == (30_000, 3) and S.dtype == torch.int64
    assert _chi2_pvalue(S, tt.full()) > 1e-4
    other = G.hmm_to_tt(G.random_hmm(2, 3, generator=g, dtype=torch.float64), 3).full()
    assert _chi2_pvalue(S, other) < 1e-6                                # the test has power


def test_sample_tt_of_a_signed_train_of_a_nonnegative_tensor():
    "TT-SVD of an HMM tensor has signed cores; sampling still follows the (nonnegative) tensor."
    from tensornn.decompositions import tt_svd
    g = torch.Generator().manual_seed(6)
    P = G.hmm_to_tt(G.random_hmm(2, 3, generator=g, dtype=torch.float64), 3).full()
    S = G.sample_tt(tt_svd(P), 20_000, generator=g)
    assert _chi2_pvalue(S, P) > 1e-4


def test_em_never_decreases_likelihood_and_fits():
    g = torch.Generator().manual_seed(7)
    true = G.random_hmm(3, 5, sharpness=2.0, generator=g, dtype=torch.float64)
    X = G.sample_hmm(true, 200, 25, generator=g)
    fit, rec = G.fit_hmm_em(X, 3, n_iter=60, generator=g, dtype=torch.float64)
    e = torch.tensor(rec.errors)
    assert len(e) >= 2 and bool((e.diff() <= 1e-12).all())
    assert e[-1] < e[0]
    assert abs(float(G.log_likelihood(fit, X).sum()) + rec.errors[-1] * X.numel()) < 1e-8 * X.numel()
    assert rec.errors[-1] <= -float(G.log_likelihood(true, X).mean()) / 25 + 1e-3


def test_em_matches_hmmlearn_one_step():
    "One EM sweep from the same start gives hmmlearn's parameters (same expected counts)."
    hmm = pytest.importorskip("hmmlearn.hmm")
    g = torch.Generator().manual_seed(8)
    p0 = G.random_hmm(3, 4, generator=g, dtype=torch.float64)
    X = G.sample_hmm(G.random_hmm(3, 4, generator=g, dtype=torch.float64), 30, 20, generator=g)
    ours, _ = G.fit_hmm_em(X, 3, init=p0, n_iter=1, tol=0.0)
    ref = hmm.CategoricalHMM(n_components=3, n_features=4, n_iter=1, init_params="", tol=0.0)
    ref.startprob_, ref.transmat_, ref.emissionprob_ = (t.numpy().copy() for t in p0)
    ref.fit(X.reshape(-1, 1).numpy(), lengths=[20] * 30)
    for a, b in zip(ours, (ref.startprob_, ref.transmat_, ref.emissionprob_)):
        assert_close(a, torch.as_tensor(b), rtol=1e-8, atol=1e-10)


@pytest.mark.filterwarnings("ignore:jennrich:RuntimeWarning")
@pytest.mark.parametrize("learn", ["spectral", "power", "jennrich"])
def test_moment_methods_approach_the_truth(learn):
    "Over seeds, the parameter error at N = 40 000 sequences is well below the error at N = 400."
    fns = {"spectral": lambda X, g: G.spectral_hmm(X, 3, n_symbols=6, generator=g, dtype=torch.float64),
           "power": lambda X, g: G.tensor_hmm(X, 3, n_symbols=6, generator=g, dtype=torch.float64),
           "jennrich": lambda X, g: G.tensor_hmm(X, 3, method="jennrich", n_symbols=6, generator=g, dtype=torch.float64)}
    small, large = [], []
    for seed in range(4):
        g = torch.Generator().manual_seed(100 + seed)
        p = G.random_hmm(3, 6, sharpness=3.0, generator=g, dtype=torch.float64)
        eye = torch.eye(3, dtype=torch.float64)
        true = G.HMMParams(p.initial, 0.5 * eye + 0.5 * p.transition, p.emission)   # well-conditioned transitions
        for N, out in ((400, small), (40_000, large)):
            est = G.align_states(fns[learn](G.sample_hmm(true, N, 6, generator=g), g), true)
            assert isinstance(est, G.HMMParams)
            out.append(float((est.emission - true.emission).norm() / true.emission.norm()))
    assert sorted(large)[2] < 0.5 * sorted(small)[2], (small, large)
    assert sorted(large)[2] < 0.15


def test_observable_operators_are_exact_on_exact_moments():
    "With (nearly) infinite data the HKZ train reproduces the HMM's distribution."
    g = torch.Generator().manual_seed(9)
    true = G.random_hmm(2, 4, sharpness=2.0, generator=g, dtype=torch.float64)
    X = G.sample_hmm(true, 100_000, 4, generator=g)
    oom = G.observable_operators(X, 2, 3, dtype=torch.float64)
    assert isinstance(oom, TTTensor) and max(oom.rank) <= 2
    assert float((oom.full() - G.hmm_to_tt(true, 3).full()).abs().max()) < 5e-3
    ll = G.log_likelihood(oom, X[:50, :3], floor=1e-300)
    assert bool(torch.isfinite(ll).all())


def test_align_states_undoes_a_permutation():
    g = torch.Generator().manual_seed(10)
    p = G.random_hmm(4, 6, sharpness=3.0, generator=g, dtype=torch.float64)
    perm = torch.tensor([2, 0, 3, 1])
    q = G.HMMParams(p.initial[perm], p.transition[perm][:, perm], p.emission[perm])
    back = G.align_states(q, p)
    for a, b in zip(back, p): assert_close(a, b)


# ----------------------------------------------------------------------------- bad input
def _p(g=None):
    return G.random_hmm(2, 3, generator=g or torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("make, exc, words", [
    (lambda p: G.hmm_to_tt(p.initial, p.transition * 1.2, p.emission, 3), ValueError, "transition"),
    (lambda p: G.hmm_to_tt(p.initial, p.transition, p.emission - 0.5, 3), ValueError, "emission"),
    (lambda p: G.hmm_to_tt(torch.tensor([1.5, -0.5], dtype=torch.float64), p.transition, p.emission, 3), ValueError, "initial"),
    (lambda p: G.hmm_to_tt(p.initial[:0], p.transition, p.emission, 3), ValueError, "initial"),
    (lambda p: G.hmm_to_tt(p.initial, p.transition[:1], p.emission, 3), ValueError, "transition"),
    (lambda p: G.hmm_to_tt(p.initial, p.transition, p.emission[:1], 3), ValueError, "emission"),
    (lambda p: G.hmm_to_tt(p.initial, p.transition, p.emission.float(), 3), TypeError, "emission"),
    (lambda p: G.hmm_to_tt(p.initial, p.transition, "no", 3), TypeError, "emission"),
    (lambda p: G.hmm_to_tt(p.initial, p.transition, p.emission * float("nan"), 3), ValueError, "emission"),
    (lambda p: G.hmm_to_tt(p, 0), ValueError, "length"),
    (lambda p: G.hmm_to_tt(p, 3, p.emission), TypeError, "hmm_to_tt"),
    (lambda p: G.log_likelihood(p, torch.tensor([[0, 3]])), ValueError, "sequences"),
    (lambda p: G.log_likelihood(p, torch.tensor([[0, -1]])), ValueError, "sequences"),
    (lambda p: G.log_likelihood(p, [[0, 1, 2], [1, 2]]), ValueError, "mixed lengths"),
    (lambda p: G.log_likelihood(p, torch.tensor([[0.0, 1.0]])), TypeError, "sequences"),
    (lambda p: G.log_likelihood(p, torch.tensor([0, 1])), ValueError, "sequences"),
    (lambda p: G.log_likelihood(G.hmm_to_tt(p, 3), torch.tensor([[0, 1]])), ValueError, "length 3"),
    (lambda p: G.log_likelihood("hmm", torch.tensor([[0, 1]])), TypeError, "model"),
    (lambda p: G.random_hmm(0, 3), ValueError, "n_states"),
    (lambda p: G.fit_hmm_em(torch.tensor([[0, 1, 2]]), 0), ValueError, "n_states"),
    (lambda p: G.fit_hmm_em(torch.tensor([[0, 1, 2]]), 2, pseudocount=-1.0), ValueError, "pseudocount"),
    (lambda p: G.fit_hmm_em(torch.tensor([[0, 1, 2]]), 2, init="random"), TypeError, "init"),
    (lambda p: G.spectral_hmm(torch.tensor([[0, 1]]), 2), ValueError, "length >= 3"),
    (lambda p: G.tensor_hmm(torch.tensor([[0, 1, 2]]), 5), ValueError, "n_states"),
    (lambda p: G.tensor_hmm(torch.tensor([[0, 1, 2]]), 2, method="als"), ValueError, "method"),
    (lambda p: G.sample_hmm(p, 0, 3), ValueError, "n_samples"),
    (lambda p: G.sample_tt("tt", 3), TypeError, "tt"),
])
def test_bad_input_names_the_argument(make, exc, words):
    with pytest.raises(exc, match=words.replace("[", r"\[").replace("]", r"\]")):
        make(_p())


def test_signed_train_needs_a_floor():
    g = torch.Generator().manual_seed(13)
    cores = [torch.randn(1, 3, 2, generator=g, dtype=torch.float64), torch.randn(2, 3, 1, generator=g, dtype=torch.float64)]
    tt = TTTensor(cores)
    X = torch.cartesian_prod(torch.arange(3), torch.arange(3))
    vals = tt.full()[tuple(X.T)]
    assert bool((vals < 0).any())
    with pytest.raises(ValueError, match="floor"):
        G.log_likelihood(tt, X)
    ll = G.log_likelihood(tt, X, floor=1e-12)
    assert_close(ll[vals > 0], vals[vals > 0].log())


# ----------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@needs_cuda
def test_hmm_on_cuda():
    g = torch.Generator().manual_seed(14)
    p = G.random_hmm(3, 5, generator=g, dtype=torch.float64)
    X = G.sample_hmm(p, 40, 30, generator=g)
    pc, Xc = p.to("cuda"), X.to("cuda")
    assert_close(G.log_likelihood(pc, Xc).cpu(), G.log_likelihood(p, X))
    fit, rec = G.fit_hmm_em(Xc, 3, n_iter=5, generator=g, dtype=torch.float64)
    assert fit.device.type == "cuda" and bool((torch.tensor(rec.errors).diff() <= 1e-12).all())
    S = G.sample_tt(G.hmm_to_tt(pc, 4), 100, generator=torch.Generator("cuda").manual_seed(0))
    assert S.device.type == "cuda"


# ----------------------------------------------------------------------------- Born machines, RBMs, pushforwards
def _dense(cores):
    out = cores[0].reshape(-1, cores[0].shape[2])
    for c in cores[1:]:
        out = (out @ c.reshape(c.shape[0], -1)).reshape(-1, c.shape[2])
    return out.reshape([c.shape[1] for c in cores])


@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=4), rank=st.integers(1, 3), cplx=st.booleans(),
       seed=st.integers(0, 10_000))
def test_born_machine_is_normalised_and_matches_dense(shape, rank, cplx, seed):
    g = torch.Generator().manual_seed(seed)
    bm = G.random_born(shape, rank, complex=cplx, generator=g, dtype=torch.float64)
    psi = _dense([c.detach() for c in bm.cores])
    P = psi.abs() ** 2 / (psi.abs() ** 2).sum()
    assert_close(bm.full(), P)
    idx = torch.stack([torch.randint(0, n, (6,), generator=g) for n in shape], 1)
    assert_close(bm.log_prob(idx).detach(), P[tuple(idx.T)].log(), rtol=1e-9, atol=1e-9)
    assert_close(bm.log_prob(torch.cartesian_prod(*[torch.arange(n) for n in shape]).reshape(-1, len(shape))).detach().exp().sum(),
                 torch.tensor(1.0, dtype=torch.float64))


def test_born_machine_long_chain_is_finite_and_samples_follow_p():
    g = torch.Generator().manual_seed(15)
    bm = G.random_born([2] * 400, 3, generator=g, dtype=torch.float64)
    S = bm.sample(5, generator=g)
    assert S.shape == (5, 400) and bool(torch.isfinite(bm.log_prob(S)).all())
    small = G.random_born((2, 3, 2), 2, complex=True, generator=g, dtype=torch.float64)
    S = small.sample(30_000, generator=g)
    assert _chi2_pvalue_mixed(S, small.full()) > 1e-4


def _chi2_pvalue_mixed(samples, probs):
    from scipy.stats import chisquare
    flat = torch.zeros(samples.shape[0], dtype=torch.long)
    for k, n in enumerate(probs.shape): flat = flat * n + samples[:, k]
    counts = torch.bincount(flat, minlength=probs.numel()).double()
    return chisquare(counts.numpy(), (probs.reshape(-1) * samples.shape[0]).numpy()).pvalue


def test_fit_born_approaches_the_teacher_nll():
    "A student Born machine trained on samples of a rank-2 teacher reaches (about) the teacher's NLL on those samples."
    g = torch.Generator().manual_seed(16)
    teacher = G.random_born([2] * 5, 2, generator=g, dtype=torch.float64)
    data = teacher.sample(3000, generator=g)
    floor = -float(teacher.log_prob(data).detach().mean())
    student = G.random_born([2] * 5, 2, generator=g, dtype=torch.float64)
    student, rec = G.fit_born(student, data, n_iter=150, lr=0.1, generator=g)
    assert rec.errors[-1] < rec.errors[0]
    assert rec.errors[-1] < floor + 0.05, (rec.errors[-1], floor)


def test_rbm_tensor_matches_product_formula_and_rank_bound():
    g = torch.Generator().manual_seed(17)
    n, m = 7, 2
    W, b, c = torch.randn(n, m, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64), torch.randn(m, generator=g, dtype=torch.float64)
    cp = G.rbm_tensor(W, b, c)
    assert cp.rank == 2 ** m
    P = cp.full()
    V = ((torch.arange(2 ** n)[:, None] >> torch.arange(n - 1, -1, -1)) & 1).double()
    u = torch.exp(V @ b) * torch.prod(1 + torch.exp(c + V @ W), 1)
    assert_close(P.reshape(-1), u / u.sum())
    for k in range(1, n):
        assert int(torch.linalg.matrix_rank(P.reshape(2 ** k, -1))) <= 2 ** m


def test_pushforward_moment_identities_within_monte_carlo_error():
    g = torch.Generator().manual_seed(18)
    B = torch.randn(4, 3, 3, generator=g, dtype=torch.float64)
    A = (B + B.mT) / 2
    N = 400_000
    x = torch.randn(N, 3, generator=g, dtype=torch.float64)
    Y = torch.einsum("na,iab,nb->ni", x, A, x)
    mean, cov, k3 = G.pushforward_moments(A)
    emp = G.empirical_moments(Y)
    se = Y.std(0) / N ** 0.5
    assert bool(((emp[0] - mean).abs() < 5 * se).all())                       # mean within 5 standard errors
    assert float((emp[1] - cov).norm() / cov.norm()) < 0.03
    assert float((emp[2] - k3).norm() / k3.norm()) < 0.1
    assert_close(mean, torch.einsum("iaa->i", A))                            # independent formulas
    assert_close(cov, 2 * torch.einsum("iab,jba->ij", A, A))


def test_pushforward_fit_recovers_up_to_rotation():
    g = torch.Generator().manual_seed(19)
    B = torch.randn(6, 3, 3, generator=g, dtype=torch.float64)
    A = (B + B.mT) / 2
    Q = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))[0]
    rotated = Q @ A @ Q.T
    assert_close(G.align_orthogonal(rotated, A, generator=g), A, rtol=1e-8, atol=1e-8)
    A_fit, rec = G.fit_pushforward(G.pushforward_moments(A), 3, generator=g)
    assert float((G.align_orthogonal(A_fit, A, generator=g) - A).norm() / A.norm()) < 1e-2


@pytest.mark.parametrize("make, exc, words", [
    (lambda: G.BornMachine([torch.randn(1, 2, 2), torch.randn(3, 2, 1)]), ValueError, "cores"),
    (lambda: G.random_born((2, 2), 0), ValueError, "rank"),
    (lambda: G.random_born((2, 2), 2).log_prob(torch.tensor([[0, 2]])), ValueError, "x"),
    (lambda: G.fit_born("model", torch.zeros(2, 2, dtype=torch.long)), TypeError, "model"),
    (lambda: G.fit_born(G.random_born((2, 2), 2), torch.zeros(2, 3, dtype=torch.long)), ValueError, "data"),
    (lambda: G.rbm_tensor(torch.randn(3, 2), torch.randn(4), torch.randn(2)), ValueError, "b, c"),
    (lambda: G.pushforward_moments(torch.randn(2, 3, 4)), ValueError, "A"),
    (lambda: G.empirical_moments(torch.randn(5)), ValueError, "Y"),
    (lambda: G.fit_pushforward((torch.randn(2), torch.randn(3, 3), torch.randn(2, 2, 2)), 2), ValueError, "moments"),
    (lambda: G.align_orthogonal(torch.randn(2, 3, 3), torch.randn(2, 4, 4)), ValueError, "A_est"),
    (lambda: G.smooth_hmm(_p(), 1.5), ValueError, "eps"),
])
def test_bad_input_born_rbm_pushforward(make, exc, words):
    with pytest.raises(exc, match=words):
        make()


def test_mixed_devices_and_dtypes_name_the_argument():
    "Mixed devices are simulated with the 'meta' device (no GPU needed)."
    p = _p()
    with pytest.raises(ValueError, match="transition"):
        G.HMMParams(p.initial, p.transition.to("meta"), p.emission)
    with pytest.raises(TypeError, match="transition"):
        G.HMMParams(p.initial, p.transition.float(), p.emission)
    with pytest.raises(ValueError, match="sequences"):
        G.log_likelihood(p, torch.zeros(2, 3, dtype=torch.long, device="meta"))


def test_numpy_parameters_from_hmmlearn_are_accepted():
    import numpy as np
    p = _p()
    q = G.HMMParams(*(t.numpy() for t in p))
    for a, b in zip(q, p): assert_close(a, b)
    with pytest.raises(ValueError, match="emission"):
        G.HMMParams(p.initial.numpy(), p.transition.numpy(), np.full((2, 3), 0.5))


def test_generative_imports_no_private_names():
    "The module uses only the public API of the others (no `_name` imported from another tensornn module)."
    import ast, inspect
    tree = ast.parse(inspect.getsource(G))
    private = [(node.module, a.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for a in node.names if a.name.startswith("_") and node.module not in ("__future__",)]
    assert not private, private
    assert not any(hasattr(G, n) for n in ("TRTensor", "tr_svd", "tr_als", "tr_inner")), "TR lives in formats/decompositions"
