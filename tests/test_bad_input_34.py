"""Bad-input table for tensornn.expressivity and tensornn.derivatives (issue 9): every public function and class
gets at least one bad input, and the error names the argument. The last test checks the table is complete."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import tensornn.derivatives as D
import tensornn.expressivity as E
from tensornn.formats import random_tt

f64 = dict(dtype=torch.float64)
X = torch.randn(20, 3, **f64)
Y = torch.randn(20, **f64)
vec_f = lambda v: torch.stack([v.sum(), (v ** 2).sum()])
scalar_f = lambda v: torch.sin(v).sum()
A3 = torch.randn(3, 3, **f64)

# (name covered, callable that must raise, exception type(s), text the message must contain)
ROWS = [
    # ------------------------------------------------------------------ expressivity
    ("get_activation", lambda: E.get_activation("relu6"), ValueError, "activation"),
    ("get_activation", lambda: E.get_activation(3, "sigma"), ValueError, "sigma"),
    ("feature_map", lambda: E.feature_map(torch.zeros(3), 2, "rbf"), ValueError, "basis"),
    ("feature_map", lambda: E.feature_map("abc", 2), TypeError, "x"),
    ("feature_map", lambda: E.feature_map(torch.zeros(3), 0), ValueError, "K"),
    ("FEATURE_MAPS", lambda: E.feature_map(torch.tensor([0.5]), 3, "onehot"), ValueError, "x"),
    ("SumProductNetwork", lambda: E.SumProductNetwork(0, 3), ValueError, "d"),
    ("SumProductNetwork", lambda: E.SumProductNetwork(2.5, 3), TypeError, "d"),
    ("CPSumProduct", lambda: E.CPSumProduct(3, 2, 0), ValueError, "rank"),
    ("CPSumProduct", lambda: E.CPSumProduct(3, 2, 2, seed="a"), TypeError, "seed"),
    ("CPSumProduct", lambda: E.CPSumProduct(3, 2, 2, dtype="float99"), TypeError, "dtype"),
    ("CPSumProduct", lambda: E.CPSumProduct(3, 2, 2)(torch.zeros(4, 2)), ValueError, "x"),
    ("HTSumProduct", lambda: E.HTSumProduct(1, 2, 2), ValueError, "d"),
    ("HTSumProduct", lambda: E.HTSumProduct(3, 2, {(0, 1): 2}), ValueError, "rank"),
    ("TTSumProduct", lambda: E.TTSumProduct(4, 2, (2, 2)), ValueError, "rank"),
    ("TTSumProduct", lambda: E.TTSumProduct(3, 2, 2)(torch.zeros(4, 3, **f64)), TypeError, "x"),
    ("grid_tensor", lambda: E.grid_tensor(torch.nn.Linear(2, 2), torch.zeros(3)), TypeError, "model"),
    ("grid_tensor", lambda: E.grid_tensor(E.CPSumProduct(3, 2, 2), torch.zeros(2), batch_size=0), ValueError,
     "batch_size"),
    ("matricize", lambda: E.matricize(torch.zeros(2, 3), (0, 1)), ValueError, "rows"),
    ("matricize", lambda: E.matricize(torch.zeros(3), (0,)), ValueError, "T"),
    ("matricization_rank", lambda: E.matricization_rank(torch.zeros(2, 3), (0,), tol="a"), TypeError, "tol"),
    ("matricization_rank", lambda: E.matricization_rank(torch.zeros(2, 3), (0.5,)), TypeError, "rows"),
    ("balanced_partition", lambda: E.balanced_partition(1), ValueError, "d"),
    ("interleaved_partition", lambda: E.interleaved_partition("4"), TypeError, "d"),
    ("separation_rank_bound", lambda: E.separation_rank_bound(torch.zeros(2, 2), (0,)), TypeError, "fmt"),
    ("separation_rank_bound", lambda: E.separation_rank_bound(random_tt((2, 2, 2), 2), (3,)), ValueError, "rows"),
    ("SecondOrderRNN", lambda: E.SecondOrderRNN(0, 2), ValueError, "hidden"),
    ("SecondOrderRNN", lambda: E.SecondOrderRNN(2, 2, activation="relu6"), ValueError, "activation"),
    ("SecondOrderRNN", lambda: E.SecondOrderRNN(2, 2)(torch.zeros(3, 4)), ValueError, "x"),
    ("rnn_function_dimension", lambda: E.rnn_function_dimension(2, 2, 2, length=0), ValueError, "length"),
    ("rnn_function_dimension", lambda: E.rnn_function_dimension(2, 2, 2, length=2.0), TypeError, "length"),
    ("PolynomialNetwork", lambda: E.PolynomialNetwork((3,), 2), ValueError, "widths"),
    ("PolynomialNetwork", lambda: E.PolynomialNetwork((3, 2, 1), 2)(torch.zeros(4, 2)), ValueError, "x"),
    ("pnn_counts", lambda: E.pnn_counts((3, 2, 1), 0), ValueError, "degree"),
    ("PNNCounts", lambda: E.pnn_counts("abc", 2), TypeError, "widths"),
    ("polynomial_network_dimension", lambda: E.polynomial_network_dimension((3, 2.5, 1), 2), TypeError, "widths"),
    ("PNNDimension", lambda: E.polynomial_network_dimension((30, 30, 30), 3), ValueError, "widths"),
    ("pnn_identifiability", lambda: E.pnn_identifiability((3, 2), 2), ValueError, "widths"),
    ("PNNIdentifiability", lambda: E.pnn_identifiability((3, 2, 1), True), TypeError, "degree"),
    ("polynomial_network_dimension", lambda: E.polynomial_network_dimension((3, 2, 1), 2, bias=1), TypeError, "bias"),
    ("PolynomialNetwork", lambda: E.PolynomialNetwork((3, 2, 1), 2, bias="no"), TypeError, "bias"),
    ("elementary_symmetric", lambda: E.elementary_symmetric(torch.zeros(3, 4), 0), ValueError, "order"),
    ("elementary_symmetric", lambda: E.elementary_symmetric([1.0, 2.0], 2), TypeError, "z"),
    ("elementary_symmetric", lambda: E.elementary_symmetric(torch.tensor([1.0, float("inf")]), 2), ValueError, "z"),
    ("elementary_symmetric", lambda: E.elementary_symmetric(torch.zeros(3, 4), 2, method="fast"), ValueError, "method"),
    ("FactorizationMachine", lambda: E.FactorizationMachine(4, 2, order=1), ValueError, "order"),
    ("FactorizationMachine", lambda: E.FactorizationMachine(4.0, 2), TypeError, "n_features"),
    ("FactorizationMachine", lambda: E.FactorizationMachine(4, 2)(torch.zeros(3, 5)), ValueError, "x"),
    ("FactorizationMachine", lambda: E.FactorizationMachine(4, 2, order=2).interaction_tensor(3), ValueError, "k"),
    ("PNNBlock", lambda: E.pnn_identifiability((3, 0, 1), 2), ValueError, "widths"),
    ("dyadic_tensor", lambda: E.dyadic_tensor(3.0, 3), TypeError, "f"),
    ("dyadic_tensor", lambda: E.dyadic_tensor(lambda x: x, 25), ValueError, "Q"),
    ("dyadic_tensor", lambda: E.dyadic_tensor(lambda x: x, 3, degree=-1), ValueError, "degree"),
    ("TensorizedFunction", lambda: E.TensorizedFunction(torch.zeros(2), 3, 0), TypeError, "tt"),
    ("TensorizedFunction", lambda: E.tensorize(lambda x: x, 3)(torch.tensor([2.0], **f64)), ValueError, "x"),
    ("tensorize", lambda: E.tensorize(lambda x: x.sum(), 3), ValueError, "f"),
    ("tensorize", lambda: E.tensorize(lambda x: x, 3, tol=-1.0), ValueError, "tol"),
    ("tensorize", lambda: E.tensorize(lambda x: x, 3, max_rank=0), ValueError, "max_rank"),
    ("circulant_basis", lambda: E.circulant_basis(6, [0, 6]), ValueError, "offsets"),
    ("circulant_basis", lambda: E.circulant_basis(0, [0]), ValueError, "n"),
    ("sparse_basis", lambda: E.sparse_basis([(0, 0), (0, 0)], (2, 2)), ValueError, "support"),
    ("sparse_basis", lambda: E.sparse_basis("ab", (2, 2)), TypeError, "support"),
    ("structured_product", lambda: E.structured_product([E.circulant_basis(4, [0, 1])], [torch.ones(3, **f64)]),
     ValueError, "hs[0]"),
    ("structured_product", lambda: E.structured_product(torch.zeros(2, 3, 3), [torch.ones(2, **f64)]), TypeError, "bases"),
    ("lifting_operator", lambda: E.lifting_operator([torch.zeros(2, 3, 4, **f64), torch.zeros(2, 3, 5, **f64)]),
     ValueError, "bases[1]"),
    ("lifting_operator", lambda: E.lifting_operator([torch.full((2, 2, 2), float("nan"), **f64)]), ValueError, "bases[0]"),
    ("lifting_identifiability", lambda: E.lifting_identifiability([E.circulant_basis(4, [0, 1])], seed="a"),
     TypeError, "seed"),
    ("LiftingIdentifiability", lambda: E.lifting_identifiability([E.circulant_basis(4, [0, 1]).long()]), TypeError,
     "bases[0]"),
    ("TrainableActivationNetwork", lambda: E.TrainableActivationNetwork((3, 2, 2, 1), 3), ValueError, "widths"),
    ("TrainableActivationNetwork", lambda: E.TrainableActivationNetwork((3, 2, 1), 2)(torch.zeros(4, 2)), ValueError, "x"),
    ("TrainableActivationNetwork", lambda: E.TrainableActivationNetwork((3, 2, 1), 2).coefficient_tensor(3),
     ValueError, "k"),
    ("activation_network_dimension", lambda: E.activation_network_dimension((3, 2, 1), 2, activation="relu"),
     ValueError, "activation"),
    ("ActivationDimension", lambda: E.activation_network_dimension((3, 2, 1), 0), ValueError, "degree"),
    ("tensorized_errors", lambda: E.tensorized_errors(torch.sqrt, [21], [1]), ValueError, "Qs"),
    ("tensorized_errors", lambda: E.tensorized_errors(torch.sqrt, [3], [1], breakpoints=[2.0]), ValueError, "breakpoints"),
    ("ApproximationCurve", lambda: E.tensorized_errors(torch.sqrt, [3], [0]), ValueError, "ranks"),
    ("ApproximationCurve", lambda: E.tensorized_errors(torch.sqrt, [3], [1]).front(gain=-1.0), ValueError, "gain"),
    ("fit_rate", lambda: E.fit_rate([1.0, 2.0], [1.0, 0.5], kind="power"), ValueError, "kind"),
    ("fit_rate", lambda: E.fit_rate([1.0, 2.0], [1.0]), ValueError, "error"),
    ("RateFit", lambda: E.fit_rate("ab", [1.0, 0.5]), TypeError, "n"),
    # expressivity, issue 16 (helper ident): the stability constant of a lifting
    ("lifting_stability", lambda: E.lifting_stability([E.circulant_basis(4, [0, 1])], n_starts=0), ValueError, "n_starts"),
    ("lifting_stability", lambda: E.lifting_stability(torch.zeros(2, 3, 3, **f64)), TypeError, "bases"),
    ("LiftingStability", lambda: E.lifting_stability([E.circulant_basis(4, [0, 1])], steps=1.5), TypeError, "steps"),
    ("activation_uniqueness", lambda: E.activation_uniqueness("net"), TypeError, "net"),
    ("ActivationUniqueness", lambda: E.activation_uniqueness(E.TrainableActivationNetwork((3, 2, 2), 3), rtol=-1.0),
     ValueError, "rtol"),
    # ------------------------------------------------------------------ derivatives
    ("derivative_tensor", lambda: D.derivative_tensor(3, X, 1), TypeError, "f:"),
    ("derivative_tensor", lambda: D.derivative_tensor(scalar_f, X, 5), ValueError, "order"),
    ("derivative_tensor", lambda: D.derivative_tensor(scalar_f, X.long(), 1), TypeError, "x:"),
    ("hermite_score", lambda: D.hermite_score(torch.randn(100, **f64), 3), ValueError, "(N, d)"),
    ("hermite_score", lambda: D.hermite_score(X, 2.0), TypeError, "order"),
    ("hermite_score", lambda: D.hermite_score(X.to(torch.complex128), 2), TypeError, "x"),
    ("stein_moment", lambda: D.stein_moment(X, Y[:5], 2), ValueError, "y:"),
    ("stein_moment", lambda: D.stein_moment(X, Y, 2, project=[None]), ValueError, "project"),
    ("stein_moment", lambda: D.stein_moment(X, Y, 2, chunk_size=0), ValueError, "chunk_size"),
    ("TwoLayerNet", lambda: D.TwoLayerNet(torch.eye(2), torch.zeros(3), torch.ones(2)), ValueError, "b1"),
    ("TwoLayerNet", lambda: D.TwoLayerNet(torch.eye(2), torch.zeros(2), torch.ones(2), activation="gelu?"),
     ValueError, "activation"),
    ("TwoLayerNet", lambda: D.TwoLayerNet.random(3, 2, seed="a"), TypeError, "seed"),
    ("matched_row_cosines", lambda: D.matched_row_cosines(torch.zeros(2, 3, **f64), torch.zeros(2, 4, **f64)),
     ValueError, "A_hat"),
    ("nnlift", lambda: D.nnlift(X, Y, 4), ValueError, "n_hidden"),
    ("nnlift", lambda: D.nnlift(X, Y, 2, method="svd"), ValueError, "method"),
    ("nnlift", lambda: D.nnlift(X.half(), Y.half(), 2), TypeError, "x"),
    ("fit_sgd", lambda: D.fit_sgd(D.TwoLayerNet.random(3, 2, seed=0, dtype=torch.float64), X, Y, optimizer="lbfgs"),
     ValueError, "optimizer"),
    ("fit_sgd", lambda: D.fit_sgd(D.TwoLayerNet.random(3, 2, seed=0, dtype=torch.float64), X, Y, lr=-1.0),
     ValueError, "lr"),
    ("fit_sgd", lambda: D.fit_sgd("net", X, Y), TypeError, "net"),
    ("nnlift_then_sgd", lambda: D.nnlift_then_sgd(X, Y, 4), ValueError, "n_hidden"),
    ("nnlift_then_sgd", lambda: D.nnlift_then_sgd(X, Y, 2, optimizer="lbfgs"), ValueError, "optimizer"),
    ("landscape_objective", lambda: D.landscape_objective(torch.zeros(2, 4, **f64), X, Y), ValueError, "B:"),
    ("landscape_objective", lambda: D.landscape_objective(A3, X, Y, activation="tanh"), ValueError, "c_4"),
    ("landscape_objective", lambda: D.landscape_objective(A3, X, Y, lam=float("nan")), ValueError, "lam"),
    ("landscape_objective", lambda: D.landscape_objective(A3.float(), X, Y), TypeError, "dtype"),
    ("fit_landscape", lambda: D.fit_landscape(X, Y, 4), ValueError, "n_hidden"),
    ("fit_landscape", lambda: D.fit_landscape(X, Y, 2, objective="l1"), ValueError, "objective"),
    ("fit_landscape", lambda: D.fit_landscape(X, Y, 2, init=A3), ValueError, "init"),
    ("fit_landscape", lambda: D.fit_landscape(X, Y[:5], 2), ValueError, "y:"),
    ("hermite_coefficients", lambda: D.hermite_coefficients("tanh", "3"), TypeError, "degree"),
    ("hermite_coefficients", lambda: D.hermite_coefficients("nope", 3), ValueError, "sigma"),
    ("population_loss_hermite", lambda: D.population_loss_hermite(torch.ones(2, **f64), torch.zeros(3, 3, **f64),
                                                                  torch.ones(2, **f64), torch.zeros(2, 3, **f64),
                                                                  torch.ones(3, **f64)), ValueError, "W"),
    ("fit_sum_of_cubes", lambda: D.fit_sum_of_cubes(torch.zeros(3)), ValueError, "A"),
    ("fit_sum_of_cubes", lambda: D.fit_sum_of_cubes(A3, tol="a"), TypeError, "tol"),
    ("fit_sum_of_cubes", lambda: D.fit_sum_of_cubes(A3.half()), TypeError, "A"),
    ("DecoupledModel", lambda: D.DecoupledModel(torch.eye(2, **f64), torch.eye(2, **f64), torch.ones(2, 1, **f64),
                                                torch.zeros(2, **f64), torch.ones(2, **f64), torch.zeros(2, **f64),
                                                "polynomial")(torch.zeros(4, 3, **f64)), ValueError, "x"),
    ("jacobian_decoupling", lambda: D.jacobian_decoupling(vec_f, X, 1, basis="fourier"), ValueError, "basis"),
    ("jacobian_decoupling", lambda: D.jacobian_decoupling(vec_f, X[:10], 9), ValueError, "rank"),
    ("jacobian_decoupling", lambda: D.jacobian_decoupling(vec_f, X[0], 1), ValueError, "points"),
    ("active_subspace", lambda: D.active_subspace(scalar_f, X, dim=4), ValueError, "dim"),
    ("active_subspace", lambda: D.active_subspace(vec_f, X), ValueError, "f:"),
    ("active_subspace", lambda: D.active_subspace(scalar_f, X, rtol=-1.0), ValueError, "rtol"),
    ("weights_from_spans", lambda: D.weights_from_spans(scalar_f, X, 4), ValueError, "n_hidden"),
    ("weights_from_spans", lambda: D.weights_from_spans(scalar_f, X, 2, step=0.0), ValueError, "step"),
    ("subspace_distance", lambda: D.subspace_distance(A3, torch.zeros(4, 1, **f64)), ValueError, "V:"),
    ("subspace_distance", lambda: D.subspace_distance(A3, A3.float()), TypeError, "dtype"),
    ("subspace_distance", lambda: D.subspace_distance("U", A3), TypeError, "U"),
    ("weights_from_third_derivative", lambda: D.weights_from_third_derivative(vec_f, X, 1), ValueError, "f:"),
    ("weights_from_third_derivative", lambda: D.weights_from_third_derivative(scalar_f, X, 0), ValueError, "n_hidden"),
    ("weights_from_third_derivative", lambda: D.weights_from_third_derivative(scalar_f, X, 1, method="x"),
     ValueError, "method"),
    ("relu_net_from_moments", lambda: D.relu_net_from_moments(X, Y, 4), ValueError, "n_hidden"),
    ("relu_net_from_moments", lambda: D.relu_net_from_moments(X.half(), Y.half(), 2), TypeError, "x"),
    ("fit_paratuck2", lambda: D.fit_paratuck2(torch.randn(2, 3, 4, **f64), 3, 2), ValueError, "P:"),
    ("fit_paratuck2", lambda: D.fit_paratuck2(torch.randn(2, 3, **f64), 1, 1), ValueError, "T"),
    ("three_layer_jacobian_factors", lambda: D.three_layer_jacobian_factors(torch.randn(3, 4), torch.randn(2, 3),
                                                                            torch.randn(3, 2), X), TypeError, "A1"),
    ("three_layer_jacobian_factors", lambda: D.three_layer_jacobian_factors(A3, A3, A3, X, sigma1="nope"),
     ValueError, "sigma1"),
    ("three_layer_hessian_terms", lambda: D.three_layer_hessian_terms(A3, A3[:2], torch.ones(3, **f64), X), ValueError,
     "A2"),
    ("three_layer_hessian_terms", lambda: D.three_layer_hessian_terms(A3, A3, A3[0].float(), X), TypeError, "a3"),
    ("ThreeLayerHessian", lambda: D.three_layer_hessian_terms(A3, A3, A3[0], X[:, :2]), ValueError, "A2"),
    ("relu_net_from_symmetric_moments", lambda: D.relu_net_from_symmetric_moments(X, X[:, :1]), ValueError, "y:"),
    ("relu_net_from_symmetric_moments", lambda: D.relu_net_from_symmetric_moments(X, X.float()), TypeError, "dtype"),
    ("relu_net_from_symmetric_moments", lambda: D.relu_net_from_symmetric_moments(X, X, chunk_size=0), ValueError,
     "chunk_size"),
    ("hessian_misfit", lambda: D.hessian_misfit((A3, A3), torch.zeros(2, 3, 3, 3, **f64)), TypeError, "factors"),
    ("hessian_misfit", lambda: D.hessian_misfit((A3,) * 5, torch.zeros(2, 3, 3, **f64)), ValueError, "hessians"),
    # ---- convolutional networks by moments (issue 16)
    ("NonOverlappingCNN", lambda: D.NonOverlappingCNN(torch.ones(3, **f64)), TypeError, "kernels"),
    ("NonOverlappingCNN", lambda: D.NonOverlappingCNN([torch.ones(2, **f64), torch.ones(2)]), TypeError, "kernels[1]"),
    ("NonOverlappingCNN", lambda: D.NonOverlappingCNN.random((2, 0)), ValueError, "kernel_sizes"),
    ("cnn_kernels_from_moments", lambda: D.cnn_kernels_from_moments(X, Y, (2, 2)), ValueError, "kernel_sizes"),
    ("cnn_kernels_from_moments", lambda: D.cnn_kernels_from_moments(X, Y[:5], (3,)), ValueError, "y:"),
    ("cnn_kernels_from_moments", lambda: D.cnn_kernels_from_moments(X, Y, (3,), n_iter=0), ValueError, "n_iter"),
    ("cnn_kernels_from_moments", lambda: D.cnn_kernels_from_moments(X, Y.float(), (3,)), TypeError, "y"),
    ("fit_coupled_derivatives", lambda: D.fit_coupled_derivatives(torch.ones(2, 3, 3, **f64), torch.ones(2, 3, 3, **f64),
                                                                  2, 2), ValueError, "hessians"),
    ("fit_coupled_derivatives", lambda: D.fit_coupled_derivatives(torch.ones(2, 3, 3, **f64), torch.ones(2, 3, 3, 3, **f64),
                                                                  4, 2), ValueError, "d1"),
    ("fit_coupled_derivatives", lambda: D.fit_coupled_derivatives(torch.ones(2, 3, 3), torch.ones(2, 3, 3, 3, **f64), 2, 2),
     TypeError, "dtype"),
    ("fit_coupled_derivatives", lambda: D.fit_coupled_derivatives(torch.ones(2, 3, 3, **f64), torch.ones(2, 3, 3, 3, **f64),
                                                                  2, 2, weight=float("inf")), ValueError, "weight"),
]


@pytest.mark.parametrize("name,call,exc,text", ROWS, ids=[f"{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_bad_input_is_named(name, call, exc, text):
    with pytest.raises(exc) as e:
        call()
    assert text in str(e.value), (name, str(e.value))


def test_every_public_name_has_a_row():
    covered = {r[0] for r in ROWS}
    public = set(E.__all__) | set(D.__all__)
    assert public <= covered, sorted(public - covered)


def test_numpy_ranks_and_arrays_are_accepted():
    # issue 9: numpy integers as ranks and numpy arrays where a function only reads them
    m = E.TTSumProduct(np.int64(3), np.int64(2), np.int64(2), dtype=torch.float64, seed=0)
    assert E.grid_tensor(m, np.linspace(-1, 1, 3)).shape == (3, 3, 3)
    assert E.matricization_rank(np.ones((2, 3, 4)), np.array([0])) == 1
    assert E.pnn_counts(np.array([3, 2, 1]), np.int64(2)).n_params == 8
    assert D.hermite_coefficients("cube", np.int64(3)).shape == (4,)
