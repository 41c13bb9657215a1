"""Tests of tensornn.expressivity: sum-product networks vs their formats, separation-rank bounds, dimension counts
of polynomial networks and second-order RNNs, tensorized functions, bad input, dtypes and CUDA."""
from __future__ import annotations

import math

import itertools

import pytest
import torch
from hypothesis import given, strategies as st

from tensornn.formats import CPTensor, HTTensor, TTTensor
from tensornn.theory import generic_rank
from tensornn.expressivity import (CPSumProduct, HTSumProduct, PolynomialNetwork, SecondOrderRNN, TTSumProduct,
                                   balanced_partition, dyadic_tensor, feature_map, grid_tensor, interleaved_partition,
                                   matricization_rank, matricize, pnn_counts, pnn_identifiability,
                                   polynomial_network_dimension, rnn_function_dimension, separation_rank_bound,
                                   tensorize)
from tensornn.kernels import ht_tree, multi_mode_dot
from tensornn.testing import assert_close

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: dict(rtol=2e-4, atol=2e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}

MAKERS = {
    "cp": lambda d, K, r, **kw: CPSumProduct(d, K, r, **kw),
    "ht": lambda d, K, r, **kw: HTSumProduct(d, K, r, **kw),
    "convac": lambda d, K, r, **kw: HTSumProduct(d, K, r, diagonal=True, **kw),
    "tt": lambda d, K, r, **kw: TTSumProduct(d, K, r, **kw),
}
FORMAT = {"cp": CPTensor, "ht": HTTensor, "convac": HTTensor, "tt": TTTensor}


@pytest.mark.parametrize("kind", list(MAKERS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("feature", ["legendre", "monomial", "fourier"])
def test_grid_tensor_equals_format_full(kind, dtype, feature):
    d, K = 5, 3
    m = MAKERS[kind](d, K, 2, basis=feature, dtype=dtype, seed=3)
    fmt = m.to_format()
    assert isinstance(fmt, FORMAT[kind])
    pts = torch.linspace(-0.9, 0.8, 4, dtype=dtype)
    with torch.no_grad():
        G = grid_tensor(m, pts)
        expected = multi_mode_dot(fmt.full(), [feature_map(pts, K, feature)] * d)
    assert G.dtype == dtype and G.shape == (4,) * d
    assert_close(G, expected, **TOL[dtype])


@pytest.mark.parametrize("kind", list(MAKERS))
def test_onehot_grid_tensor_is_coefficient_tensor(kind):
    m = MAKERS[kind](4, 3, 3, basis="onehot", dtype=torch.float64, seed=0)
    with torch.no_grad():
        assert_close(grid_tensor(m, torch.arange(3, dtype=torch.float64)), m.to_format().full(), **TOL[torch.float64])


def test_forward_matches_full_contraction_per_point():
    m = TTSumProduct(4, 3, (2, 3, 2), dtype=torch.float64, seed=1)
    x = torch.rand(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    phi = feature_map(x, 3)
    with torch.no_grad():
        A = m.to_format().full()
        ref = torch.einsum("abcd,na,nb,nc,nd->n", A, phi[:, 0], phi[:, 1], phi[:, 2], phi[:, 3])
        assert_close(m(x), ref, **TOL[torch.float64])


def test_models_are_trainable():
    m = HTSumProduct(4, 3, 2, diagonal=True, seed=0)
    x = torch.rand(16, 4, generator=torch.Generator().manual_seed(0))
    m(x).pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


@pytest.mark.parametrize("d", [3, 4, 5, 6, 7])
@pytest.mark.parametrize("K,r", [(2, 2), (3, 2), (2, 3)])
def test_matricization_ranks_reach_bounds(d, K, r):
    nets = [CPSumProduct(d, K, 2 * r + 1, dtype=torch.float64, seed=d), HTSumProduct(d, K, r, dtype=torch.float64, seed=d),
            HTSumProduct(d, K, r, diagonal=True, dtype=torch.float64, seed=d), TTSumProduct(d, K, r, dtype=torch.float64, seed=d)]
    for m in nets:
        with torch.no_grad():
            A = m.to_format().full()
        for rows in {balanced_partition(d), interleaved_partition(d), (0,), (1, d - 1), (0, d - 1)}:
            bound = separation_rank_bound(m, rows)
            assert bound == separation_rank_bound(m.to_format(), rows)
            assert matricization_rank(A, rows) == bound, (type(m).__name__, rows)


def _brute_force_min_cut(vertices, edges, legs, rows):
    """Independent oracle for the tree bound: try every assignment of the network's vertices to the two sides; the
    cost is the product of the dimensions of the bonds between sides times the sizes of the physical legs (mode k of
    size n, attached to a vertex) that sit on the other side from their mode."""
    best = None
    for sides in itertools.product((True, False), repeat=len(vertices)):
        side = dict(zip(vertices, sides))
        cost = math.prod(dim for a, b, dim in edges if side[a] != side[b])
        cost *= math.prod(n for k, (v, n) in legs.items() if side[v] != (k in rows))
        best = cost if best is None else min(best, cost)
    return best


def _tt_graph(m):
    d = m.d
    return list(range(d)), [(k, k + 1, m.ranks[k + 1]) for k in range(d - 1)], {k: (k, m.K) for k in range(d)}


def _ht_graph(m):
    d = m.d
    tree = ht_tree(d)
    vertices = [(k, k + 1) for k in range(d)] + list(tree)
    edges = [(child, t, m.ranks[child]) for t, kids in tree.items() for child in kids]
    return vertices, edges, {k: ((k, k + 1), m.K) for k in range(d)}


@given(d=st.integers(2, 6), K=st.integers(2, 3), data=st.data())
def test_tree_bounds_match_brute_force_min_cut_and_are_attained(d, K, data):
    # non-uniform ranks and arbitrary partitions: the dynamic programme against exhaustive search, then the measured
    # rank of a random network against the bound
    rows = tuple(sorted(data.draw(st.sets(st.integers(0, d - 1), min_size=1, max_size=d - 1))))
    tt = TTSumProduct(d, K, data.draw(st.lists(st.integers(1, 5), min_size=d - 1, max_size=d - 1)),
                      dtype=torch.float64, seed=d)
    nodes = [(k, k + 1) for k in range(d)] + [t for t in ht_tree(d) if t != (0, d)]
    ht = HTSumProduct(d, K, {t: data.draw(st.integers(1, 4)) for t in nodes}, dtype=torch.float64, seed=d)
    for m, graph in [(tt, _tt_graph), (ht, _ht_graph)]:
        bound = separation_rank_bound(m, rows)
        assert bound == _brute_force_min_cut(*graph(m), set(rows)), (type(m).__name__, m.ranks, rows)
        with torch.no_grad():
            assert matricization_rank(m.to_format().full(), rows) == bound, (type(m).__name__, m.ranks, rows)


def test_measured_rank_never_exceeds_bound_at_special_parameters():
    # non-generic parameters can only lower the rank: a rank-deficient TT core, repeated CP terms, a ConvAC whose
    # channels are copies of each other
    d, K = 6, 3
    tt = TTSumProduct(d, K, 3, dtype=torch.float64, seed=0)
    cp = CPSumProduct(d, K, 6, dtype=torch.float64, seed=0)
    ht = HTSumProduct(d, K, 3, diagonal=True, dtype=torch.float64, seed=0)
    with torch.no_grad():
        tt.cores[2][:, :, 2] = tt.cores[2][:, :, 0]                 # bond 3 carries only 2 independent directions
        cp.factors[:, :, 3:] = cp.factors[:, :, :3]                 # six terms, three distinct
        for U in ht.leaves: U[:, 1:] = U[:, :1]                     # one independent channel per leaf
        for m, rows, expected in [(tt, (0, 1, 2), 2), (cp, (0, 1, 2), 3), (ht, interleaved_partition(d), 1)]:
            measured, bound = matricization_rank(m.to_format().full(), rows), separation_rank_bound(m, rows)
            assert measured <= bound and measured == expected, (type(m).__name__, measured, bound)
            assert measured < bound


def test_grid_tensor_with_points_per_input():
    m = HTSumProduct(3, 3, 2, dtype=torch.float64, seed=0)
    pts = torch.tensor([[-1.0, 0.5], [0.1, 0.2], [0.9, -0.3]], dtype=torch.float64)        # (d, M)
    with torch.no_grad():
        G = grid_tensor(m, pts, batch_size=3)                       # several batches
        assert_close(G, multi_mode_dot(m.to_format().full(), [feature_map(p, 3) for p in pts]), **TOL[torch.float64])
        assert_close(G[1, 0, 1], m(torch.tensor([[0.5, 0.1, -0.3]], dtype=torch.float64))[0])


def test_known_bounds():
    # ConvAC: interleaved r^(d/2), balanced r (Cohen, Sharir & Shashua 2016); CP: min(R, sizes)
    assert separation_rank_bound(HTSumProduct(8, 3, 2, diagonal=True), interleaved_partition(8)) == 16
    assert separation_rank_bound(HTSumProduct(8, 3, 2), balanced_partition(8)) == 2
    assert separation_rank_bound(TTSumProduct(6, 4, 3), (0, 1, 2)) == 3
    assert separation_rank_bound(CPSumProduct(4, 2, 9), (0,)) == 2
    assert separation_rank_bound(CPSumProduct(4, 3, 5), (0, 1)) == 5


def test_matricize_layout():
    T = torch.arange(24.).reshape(2, 3, 4)
    assert_close(matricize(T, (0,)), T.reshape(2, 12))
    assert_close(matricize(T, (2,)), T.permute(2, 0, 1).reshape(4, 6))
    assert_close(matricize(T, (2, 0)), T.permute(0, 2, 1).reshape(8, 3))


@pytest.mark.parametrize("rows", [(), (0, 1, 2), (3,), (0, 0), "01", (0.5,), None])
def test_bad_partitions(rows):
    T = torch.randn(2, 3, 4)
    with pytest.raises((ValueError, TypeError), match="rows"):
        matricization_rank(T, rows)
    with pytest.raises((ValueError, TypeError), match="rows"):
        separation_rank_bound(TTSumProduct(3, 2, 2), rows)


def test_bad_model_inputs():
    with pytest.raises(ValueError, match="rank"):
        CPSumProduct(4, 3, 0)
    with pytest.raises(ValueError, match="d"):
        CPSumProduct(0, 3, 2)
    with pytest.raises(ValueError, match="rank"):
        TTSumProduct(4, 3, (2, 2))
    with pytest.raises(ValueError, match="rank"):
        HTSumProduct(4, 3, {(0, 1): 2})
    with pytest.raises(ValueError, match="rank"):
        HTSumProduct(3, 3, {(0, 1): 2, (1, 2): 3, (2, 3): 2, (0, 2): 2}, diagonal=True)
    with pytest.raises(ValueError, match="basis"):
        CPSumProduct(4, 3, 2, basis="rbf")
    with pytest.raises(ValueError, match="x"):
        CPSumProduct(4, 3, 2)(torch.zeros(5, 3))
    with pytest.raises(TypeError, match="x"):
        CPSumProduct(4, 3, 2)(torch.zeros(5, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="points"):
        grid_tensor(CPSumProduct(4, 3, 2), torch.zeros(3, 2))
    with pytest.raises(TypeError, match="model"):
        grid_tensor(torch.nn.Linear(2, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="basis"):
        feature_map(torch.zeros(3), 2, "nope")
    with pytest.raises(ValueError, match="batch_size"):
        grid_tensor(CPSumProduct(3, 2, 2), torch.zeros(2), batch_size=0)
    with pytest.raises(TypeError, match="points"):
        grid_tensor(CPSumProduct(3, 2, 2), torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="rank"):
        HTSumProduct(3, 2, {(0, 1): 2, (1, 2): 2, (2, 3): 2, (0, 2): 2, (5, 6): 3})
    with pytest.raises(TypeError, match="x"):
        SecondOrderRNN(3, 2, 2)(torch.zeros(2, 4, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match="x"):
        PolynomialNetwork((3, 2, 1), 2)(torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="length"):
        rnn_function_dimension(2, 2, 2, length=0)
    with pytest.raises(ValueError, match="n_sequences"):
        rnn_function_dimension(2, 2, 2, n_sequences=-1)


def _alexander_hirschowitz(d0, d1, r):
    N = math.comb(d0 + r - 1, r)
    if r == 2:
        return d0 * d1 - math.comb(d1, 2) if d1 < d0 else N
    return min(d0 * d1, N) - ((d0, r, d1) in {(3, 4, 5), (4, 4, 9), (5, 4, 14), (5, 3, 7)})


@pytest.mark.parametrize("d0,r", [(2, 3), (3, 2), (3, 3), (3, 4), (4, 2), (5, 3)])
def test_shallow_pnn_dimension_is_alexander_hirschowitz(d0, r):
    for d1 in range(1, math.comb(d0 + r - 1, r) // d0 + 3):
        res = polynomial_network_dimension((d0, d1, 1), r, seed=0)
        assert res.dimension == _alexander_hirschowitz(d0, d1, r), (d0, d1, r)
        assert res.filling == (res.dimension == math.comb(d0 + r - 1, r))


@pytest.mark.parametrize("widths", [(2, 3, 1), (3, 2, 4), (4, 2, 2, 3), (3, 1, 3)])
def test_linear_network_dimension(widths):
    m = min(widths)
    assert polynomial_network_dimension(widths, 1, seed=0).dimension == m * (widths[0] + widths[-1] - m)


def test_pnn_counts_and_forward():
    c = pnn_counts((3, 3, 3, 1), 2)
    assert (c.n_params, c.expected, c.ambient) == (21, 15, 15)
    net = PolynomialNetwork((3, 2, 1), 3, dtype=torch.float64, seed=0)
    x = torch.randn(4, 3, dtype=torch.float64)
    A1, A2 = net.layers
    with torch.no_grad():
        assert_close(net(x), ((x @ A1.T) ** 3) @ A2.T)
        assert_close(net(2 * x), 8 * net(x))                  # homogeneous of degree 3


def test_pnn_identifiability_blocks():
    rep = pnn_identifiability((4, 3, 2, 1), 3, seed=0)
    assert rep.identifiable and rep.deep_local and [b.widths for b in rep.blocks] == [(4, 3, 2), (3, 2, 1)]
    rep = pnn_identifiability((2, 4, 3, 1), 3, seed=0)
    assert not rep.identifiable and not rep.deep_local


@pytest.mark.parametrize("widths,degree,match", [((3,), 2, "widths"), ((3, 0, 1), 2, "widths"), ((3, 2, 1), 0, "degree"),
                                                 ("abc", 2, "widths"), ((3, 2.5, 1), 2, "widths")])
def test_bad_widths(widths, degree, match):
    with pytest.raises((ValueError, TypeError), match=match):
        polynomial_network_dimension(widths, degree)


def test_rnn_saturates_at_generic_rank():
    n, d = 2, 2
    gr = generic_rank((n + 1, d + 1, n), seed=0)
    dims = [rnn_function_dimension(n, d, R, seed=0) for R in range(1, gr + 2)]
    dense = rnn_function_dimension(n, d, None, seed=0)
    assert dense == (n + 1) * (d + 1) * n + n - n * n
    assert all(a < b for a, b in zip(dims[:gr - 1], dims[1:gr])) and dims[gr - 1:] == [dense] * 2


def test_rnn_cp_equals_dense():
    cp = SecondOrderRNN(3, 2, 4, dtype=torch.float64, seed=0)
    dense = SecondOrderRNN(3, 2, None, dtype=torch.float64, seed=1)
    with torch.no_grad():
        dense.A.copy_(cp.coefficient_tensor()); dense.w.copy_(cp.w)
        x = torch.randn(3, 5, 2, dtype=torch.float64)
        assert_close(cp(x), dense(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_tensorized_polynomial_exact(dtype):
    f = lambda x: 1 - 3 * x + 2 * x ** 3
    x = torch.rand(200, dtype=dtype, generator=torch.Generator().manual_seed(0))
    tf = tensorize(f, 7, degree=3, dtype=dtype)
    out = tf(x)
    assert out.dtype == dtype and max(tf.ranks) <= 4
    assert_close(out, f(x), rtol=1e-4 if dtype == torch.float32 else 1e-10, atol=1e-4 if dtype == torch.float32 else 1e-10)


def test_tensorized_step_ranks_and_midpoints():
    T = dyadic_tensor(lambda x: x, 3)
    assert T.shape == (2, 2, 2, 1)
    assert_close(T.flatten(), (torch.arange(8, dtype=torch.float64) + 0.5) / 8)
    tf = tensorize(lambda x: (x > 1 / 3).double(), 10, degree=0, tol=1e-12)
    assert max(tf.ranks) == 2
    assert_close(tf(torch.tensor([0.2, 0.5], dtype=torch.float64)), torch.tensor([0., 1.], dtype=torch.float64))


def test_bad_tensorize_inputs():
    with pytest.raises(ValueError, match="Q"):
        tensorize(lambda x: x, 0)
    with pytest.raises(ValueError, match="degree"):
        tensorize(lambda x: x, 3, degree=-1)
    with pytest.raises(TypeError, match="f"):
        tensorize(3.0, 3)
    with pytest.raises(ValueError, match="f"):
        tensorize(lambda x: x.sum(), 3)
    with pytest.raises(ValueError, match="x"):
        tensorize(lambda x: x, 3)(torch.tensor([2.0], dtype=torch.float64))


@CUDA
@pytest.mark.gpu
@pytest.mark.parametrize("kind", list(MAKERS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_models_on_cuda(kind, dtype):
    cpu = MAKERS[kind](5, 3, 2, dtype=dtype, seed=0)
    gpu = MAKERS[kind](5, 3, 2, dtype=dtype, device="cuda", seed=0)
    x = torch.rand(64, 5, dtype=dtype, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        out = gpu(x.cuda())
        assert out.device.type == "cuda" and out.dtype == dtype
        tol = dict(rtol=5e-3, atol=5e-4) if dtype == torch.float32 else TOL[dtype]
        assert_close(out.cpu(), cpu(x), **tol)
        G = grid_tensor(gpu, torch.linspace(-1, 1, 3, dtype=dtype, device="cuda"))
        assert G.device.type == "cuda"
        assert matricization_rank(gpu.to_format().full(), interleaved_partition(5)) == \
            separation_rank_bound(gpu, interleaved_partition(5))
    tf = tensorize(lambda x: torch.exp(x), 6, degree=2, dtype=dtype, device="cuda")
    xs = torch.rand(10, dtype=dtype, device="cuda")
    assert_close(tf(xs), torch.exp(xs), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- issue 9: one vocabulary
def test_basis_is_the_one_name_and_kind_feature_are_deprecated():
    x = torch.linspace(-1, 1, 5, dtype=torch.float64)
    with pytest.warns(DeprecationWarning, match="basis"):
        old = feature_map(x, 3, kind="fourier")
    assert_close(old, feature_map(x, 3, basis="fourier"))
    with pytest.warns(DeprecationWarning, match="basis"):
        m = CPSumProduct(3, 2, 2, feature="monomial", seed=0)
    assert m.basis == "monomial" == m.feature
    with pytest.raises(ValueError, match="basis"):
        feature_map(x, 3, "legendre", kind="fourier")


def test_n_params_is_a_property_everywhere():
    m = CPSumProduct(3, 2, 4, seed=0)
    assert isinstance(m.n_params, int) and m.n_params == 3 * 2 * 4 + 4 == m.to_format().n_params
    assert tensorize(lambda x: x, 3, degree=1).n_params > 0


def test_separation_bound_reads_public_format_attributes():
    from tensornn.formats import random_cp, random_ht, random_tt
    for fmt in [random_cp((3, 3, 3, 3), 4, seed=0, dtype=torch.float64),
                random_tt((3, 3, 3, 3), 2, seed=0, dtype=torch.float64),
                random_ht((3, 3, 3, 3), 2, seed=0, dtype=torch.float64)]:
        for rows in [(0,), (0, 1), (0, 2), (1, 3)]:
            assert matricization_rank(fmt.full(), rows) == separation_rank_bound(fmt, rows)


def test_pnn_reports_are_dataclasses_with_named_fields():
    import dataclasses
    rep = pnn_identifiability((4, 3, 2, 1), 3, seed=0)
    assert all(dataclasses.is_dataclass(b) for b in rep.blocks) and rep.blocks[0].kruskal
    assert dataclasses.is_dataclass(pnn_counts((3, 2, 1), 2))


# ---------------------------------------------------------------- biases (homogenization) and factorization machines
from tensornn.expressivity import FactorizationMachine, elementary_symmetric  # noqa: E402


@pytest.mark.parametrize("d0,d1,r", [(2, 2, 2), (3, 4, 3), (2, 3, 4), (4, 5, 2), (3, 6, 3)])
def test_shallow_network_with_biases_has_the_dimension_of_its_homogenization(d0, d1, r):
    with_bias = polynomial_network_dimension((d0, d1, 1), r, bias=True, seed=0)
    plain = polynomial_network_dimension((d0 + 1, d1, 1), r, seed=0)
    assert with_bias.bias and not plain.bias
    assert (with_bias.dimension, with_bias.ambient, with_bias.n_params) == (plain.dimension, plain.ambient, plain.n_params)


@pytest.mark.parametrize("w,r", [((2, 2, 2, 1), 2), ((3, 3, 2, 1), 3), ((2, 2, 2, 2, 1), 2)])
def test_deeper_biases_add_at_most_one_dimension_each(w, r):
    with_bias = polynomial_network_dimension(w, r, bias=True, seed=1).dimension
    homogenized = polynomial_network_dimension((w[0] + 1,) + w[1:], r, seed=1).dimension
    assert homogenized <= with_bias <= homogenized + sum(w[2:-1])
    assert with_bias > homogenized            # in these unsaturated cases the deeper biases do add dimensions


def test_polynomial_network_with_biases_is_its_homogenization_on_the_hyperplane():
    net = PolynomialNetwork((3, 4, 2), 3, bias=True, dtype=torch.float64, seed=0)
    homog = PolynomialNetwork((4, 4, 2), 3, dtype=torch.float64, seed=1)
    with torch.no_grad():
        homog.layers[0].copy_(torch.cat([net.layers[0], net.biases[0][:, None]], 1))
        homog.layers[1].copy_(net.layers[1])
    x = torch.randn(7, 3, dtype=torch.float64)
    assert_close(net(x), homog(torch.cat([x, torch.ones(7, 1, dtype=torch.float64)], 1)))
    assert len(PolynomialNetwork((3, 4, 2), 3).biases) == 0


def _e_brute(z, m):
    return torch.stack([torch.stack([sum((row[list(S)].prod() for S in itertools.combinations(range(len(row)), k)), row.new_zeros(()))
                                     for k in range(1, m + 1)]) for row in z])


@given(st.integers(1, 7), st.integers(1, 7), st.integers(0, 2**31 - 1), st.sampled_from(["auto", "newton", "recursion"]))
def test_elementary_symmetric_is_the_sum_over_subsets(n, m, seed, method):
    z = torch.randn(3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    e = elementary_symmetric(z, m, method=method)
    assert e.shape == (3, m)
    assert_close(e, _e_brute(z, m), rtol=1e-9, atol=1e-10)       # e_k = 0 for k > n comes out of both methods too


def test_elementary_symmetric_float32_at_high_order_takes_the_recursion():
    "Newton's identities fail in float32 at order 16; the default (the recursion there) stays at rounding level."
    z = torch.randn(6, 5, 24, generator=torch.Generator().manual_seed(3))
    ref, bound = elementary_symmetric(z.double(), 16, method="recursion"), elementary_symmetric(z.abs().double(), 16)
    err = lambda e: float(((e.double() - ref).abs() / bound).max())
    assert err(elementary_symmetric(z, 16)) < 1e-5
    assert err(elementary_symmetric(z, 16, method="newton")) > 1e-3
    assert elementary_symmetric(torch.zeros(2, 0), 3).shape == (2, 3)


def test_elementary_symmetric_float32_accuracy_at_the_orders_used():
    z = torch.rand(64, 200, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.2
    exact = elementary_symmetric(z, 4)
    approx = elementary_symmetric(z.float(), 4).double()
    assert ((approx - exact).abs() / exact.abs()).max() < 1e-3


@pytest.mark.parametrize("order", [2, 3, 4, 6])
def test_factorization_machine_equals_its_dense_interaction_tensors(order):
    fm = FactorizationMachine(5, 3, order=order, init_scale=1.0, dtype=torch.float64, seed=order)
    with torch.no_grad():
        fm.bias.fill_(-0.3); fm.linear.copy_(torch.linspace(-1, 1, 5, dtype=torch.float64))
    x = torch.randn(6, 5, dtype=torch.float64)
    dense = fm.bias + x @ fm.linear
    for k in range(2, order + 1):
        T = fm.interaction_tensor(k)
        assert_close(T, T.permute(*reversed(range(k))))                    # symmetric
        assert float(T[(0,) * k]) == 0.0                                   # no repeated index
        dense = dense + torch.einsum(T, list(range(k)), *[a for j in range(k) for a in (x, [k, j])], [k])
    assert_close(fm(x), dense.detach())


def test_factorization_machine_of_order_two_is_rendles_pairwise_model():
    fm = FactorizationMachine(4, 2, init_scale=1.0, dtype=torch.float64, seed=0)
    V = fm.factors[0].detach()
    x = torch.randn(3, 4, dtype=torch.float64)
    pairs = sum((V[i] @ V[j]) * x[:, i] * x[:, j] for i in range(4) for j in range(i + 1, 4))
    assert_close(fm(x), pairs.detach())


def test_factorization_machine_trains_and_keeps_dtype():
    fm = FactorizationMachine(6, 2, order=3, seed=0)
    x = torch.randn(32, 6)
    y = torch.randn(32)
    loss = ((fm(x) - y) ** 2).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in fm.parameters())
    assert fm(x).dtype == torch.float32 and fm.factors[1].shape == (6, 2)


def test_factorization_machine_bad_input():
    fm = FactorizationMachine(6, 2, dtype=torch.float64, seed=0)
    with pytest.raises(ValueError, match="x"): fm(torch.zeros(3, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match="x"): fm(torch.zeros(3, 6))                         # float32 vs float64
    with pytest.raises(ValueError, match="x"): fm(torch.full((3, 6), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="order"): FactorizationMachine(6, 2, order=1)
    with pytest.raises(ValueError, match="rank"): FactorizationMachine(6, 0)
    with pytest.raises(ValueError, match="init_scale"): FactorizationMachine(6, 2, init_scale=0.0)
    with pytest.raises(ValueError, match="k"): fm.interaction_tensor(3)
    with pytest.raises(TypeError, match="bias"): polynomial_network_dimension((2, 2, 1), 2, bias="yes")


@pytest.mark.gpu
@CUDA
def test_factorization_machine_cuda_matches_cpu():
    fm = FactorizationMachine(8, 3, order=3, dtype=torch.float64, seed=0, init_scale=1.0)
    x = torch.randn(16, 8, dtype=torch.float64)
    gpu = FactorizationMachine(8, 3, order=3, dtype=torch.float64, seed=0, init_scale=1.0, device="cuda")
    gpu.load_state_dict(fm.state_dict())
    assert_close(gpu(x.cuda()).cpu(), fm(x).detach())


# ---------------------------------------------------------------- issue 16: structured linear networks

from tensornn.expressivity import (ActivationDimension, LiftingIdentifiability, RateFit, TrainableActivationNetwork,
                                   activation_network_dimension, circulant_basis, fit_rate, lifting_identifiability,
                                   lifting_operator, sparse_basis, structured_product, tensorized_errors)


def _outer(vs):
    T = vs[0]
    for v in vs[1:]: T = torch.tensordot(T, v, dims=0)
    return T


@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 3)), min_size=1, max_size=3), st.integers(1, 3),
       st.integers(0, 10 ** 6))
def test_lifting_applied_to_the_rank_one_tensor_is_the_network(layers, d0, seed):
    g = torch.Generator().manual_seed(seed)
    sizes, bases = [d0], []
    for H, d in layers:
        bases.append(torch.randn(H, d, sizes[-1], dtype=torch.float64, generator=g)); sizes.append(d)
    hs = [torch.randn(B.shape[0], dtype=torch.float64, generator=g) for B in bases]
    M = lifting_operator(bases)
    assert M.shape == (sizes[-1], d0) + tuple(B.shape[0] for B in bases)
    assert_close(torch.tensordot(M, _outer(hs), dims=len(hs)), structured_product(bases, hs))


@pytest.mark.parametrize("dtype", DTYPES)
def test_structured_product_of_convolutions_multiplies_polynomials(dtype):
    # oracle: NumPy's polynomial product of the kernels (no wrap-around at n = 16)
    import numpy as np
    offs = ([0, 1, 3], [0, 2], [0, 1])
    hs = [torch.randn(len(o), dtype=dtype) for o in offs]
    P = structured_product([circulant_basis(16, o, dtype=dtype) for o in offs], hs)
    kernel = np.array([1.0])
    for o, h in zip(offs, hs):
        p = np.zeros(max(o) + 1); p[o] = h.double().numpy()
        kernel = np.polynomial.polynomial.polymul(kernel, p)
    assert P.dtype == dtype
    assert_close(P[:len(kernel), 0].double(), torch.from_numpy(kernel), **TOL[dtype])
    assert_close(P, torch.roll(torch.roll(P, 1, 0), 1, 1), **TOL[dtype])                # still circulant


def test_lifting_identifiability_cases():
    dy = lifting_identifiability([circulant_basis(16, o) for o in ([0, 1], [0, 2], [0, 4])], seed=0)
    assert dy.injective and dy.locally_identifiable and (dy.lifted_dim, dy.lifting_rank, dy.jacobian_rank) == (8, 8, 4)
    eq = lifting_identifiability([circulant_basis(16, [0, 1, 2])] * 2, seed=0)
    assert eq.locally_identifiable and not eq.injective and eq.lifting_rank == 5
    dense = lifting_identifiability([sparse_basis(list(itertools.product(range(3), range(3))), (3, 3))] * 2, seed=0)
    assert not dense.locally_identifiable and dense.jacobian_rank == 9                   # GL_3 symmetry
    bfly = lifting_identifiability([sparse_basis([(i, j) for i in range(4) for j in range(4) if i // 2 == j // 2], (4, 4)),
                                    sparse_basis([(i, j) for i in range(4) for j in range(4) if i % 2 == j % 2], (4, 4))],
                                   seed=0)
    assert bfly.jacobian_rank == bfly.n_params - 4                                       # one rescaling per hidden unit
    assert isinstance(dy, LiftingIdentifiability)


@given(st.integers(0, 10 ** 6))
def test_jacobian_rank_never_exceeds_params_minus_rescalings(seed):
    g = torch.Generator().manual_seed(seed)
    bases = []
    for rows, cols in [(3, 3), (2, 3), (3, 2)]:
        mask = torch.rand(rows * cols, generator=g) < 0.6
        pos = [divmod(int(i), cols) for i in torch.nonzero(mask).flatten()] or [(0, 0)]
        bases.append(sparse_basis(pos, (rows, cols)))
    r = lifting_identifiability(bases, seed=seed)
    assert r.jacobian_rank <= r.n_params - r.scalings and r.lifting_rank <= min(r.lifted_dim, 9)


def test_root_swap_gives_the_same_network_with_different_factors():
    def poly(roots):
        import numpy as np
        return torch.from_numpy(np.polynomial.polynomial.polyfromroots(roots))
    conv = [circulant_basis(12, [0, 1, 2])] * 2
    h, g = [poly([0.5, -1.0]), poly([2.0, 0.25])], [poly([0.5, 2.0]), poly([-1.0, 0.25])]
    assert_close(structured_product(conv, h), structured_product(conv, g))
    D = _outer(h) - _outer(g)
    assert torch.linalg.matrix_rank(D) == 2                                               # not a rescaling
    assert_close(torch.tensordot(lifting_operator(conv), D, dims=2), torch.zeros(12, 12, dtype=torch.float64),
                 atol=1e-12, rtol=0)


def test_structured_bad_input():
    B = circulant_basis(6, [0, 1])
    with pytest.raises(ValueError, match="offsets"): circulant_basis(6, [0, 7])
    with pytest.raises(TypeError, match="offsets"): circulant_basis(6, "01")
    with pytest.raises(ValueError, match="support"): sparse_basis([(0, 0), (0, 0)], (2, 2))
    with pytest.raises(ValueError, match=r"bases\[1\]"): lifting_operator([B, torch.randn(2, 3, 5, dtype=torch.float64)])
    with pytest.raises(TypeError, match=r"bases\[1\]"): lifting_operator([B, B.float()])
    with pytest.raises(ValueError, match=r"bases\[0\]"): lifting_operator([torch.full((2, 2, 2), float("nan"))])
    with pytest.raises(ValueError, match=r"hs\[1\]"): structured_product([B, B], [torch.ones(2, dtype=torch.float64)] * 1
                                                                           + [torch.ones(3, dtype=torch.float64)])
    with pytest.raises(TypeError, match="hs"): structured_product([B, B], [torch.ones(2, dtype=torch.float64)])
    with pytest.raises(TypeError, match="hs"): structured_product([B], [torch.ones(2)])                # float32 vs 64
    with pytest.raises(TypeError, match="seed"): lifting_identifiability([B], seed="a")


# ---------------------------------------------------------------- issue 16: approximation rates

def test_fit_rate_recovers_power_laws_and_exponentials():
    n = torch.tensor([8.0, 16, 32, 64, 128], dtype=torch.float64)
    a = fit_rate(n, 5 * n ** -2.5)
    assert isinstance(a, RateFit) and a.kind == "algebraic" and abs(a.rate - 2.5) < 1e-10 and a.rms_residual < 1e-10
    e = fit_rate(list(n.tolist()), (3 * torch.exp(-0.2 * n.sqrt())).tolist(), kind="exponential", power=0.5)
    assert abs(e.rate - 0.2) < 1e-10 and abs(e.log_constant - math.log(3)) < 1e-10
    with pytest.raises(ValueError, match="n:"): fit_rate(-n, n)
    with pytest.raises(ValueError, match="error:"): fit_rate(n, -n)
    with pytest.raises(ValueError, match="error"): fit_rate(n, n[:3])
    with pytest.raises(ValueError, match="kind"): fit_rate(n, n, kind="linear")


@pytest.mark.parametrize("alpha", [0.25, 0.5])
def test_uniform_rate_of_a_power_singularity_is_alpha_plus_half(alpha):
    c = tensorized_errors(lambda x: x ** alpha, [6, 8, 10], [3], breakpoints=[0])
    assert abs(fit_rate(*c.uniform()).rate - (alpha + 0.5)) < 0.01
    n_f, e_f = c.front()
    assert n_f == sorted(n_f) and all(b < 0.9 * a for a, b in zip(e_f, e_f[1:]))
    # the compressed tensor reaches the uncompressed error of the deepest level with far fewer parameters
    assert min(c.error) <= 1.01 * c.uniform()[1][-1] and min(c.n_params) < c.uniform()[0][-1] / 10


def test_tensorized_errors_are_exact_for_polynomials_and_rounding_only_adds_error():
    c = tensorized_errors(lambda x: 2 * x ** 2 - x, [2, 4], [1, 3])
    by = {(q, r): e for q, r, e in zip(c.Q, c.cap, c.error)}
    assert by[(4, 3)] < 1e-12 and by[(4, None)] < 1e-12 and by[(4, 1)] > 1e-3                # TT rank of x^2 is 3
    with pytest.raises(ValueError, match="Qs"): tensorized_errors(torch.sqrt, [25], [1])
    with pytest.raises(ValueError, match="ranks"): tensorized_errors(torch.sqrt, [3], [0])
    with pytest.raises(ValueError, match="nodes"): tensorized_errors(torch.sqrt, [20], [1], nodes=16)
    with pytest.raises(ValueError, match="breakpoints"): tensorized_errors(torch.sqrt, [3], [1], breakpoints=[2.0])


# ---------------------------------------------------------------- issue 16: trainable activations

@pytest.mark.parametrize("dtype", DTYPES)
def test_trainable_activation_network_is_the_sum_of_its_coupled_cp_tensors(dtype):
    net = TrainableActivationNetwork((3, 4, 2), 3, dtype=dtype, seed=0)
    x = torch.randn(7, 3, dtype=dtype)
    total = torch.zeros(7, 2, dtype=dtype)
    for k in range(4):
        cp = net.coefficient_tensor(k)
        F = cp.full()
        if k >= 1: assert_close(cp.factors[1], net.A1.detach().T)                        # A_1 shared by all degrees
        if k == 0: total = total + F
        else:
            ix = "abcd"[:k]
            total = total + torch.einsum("o" + ix + "".join(f",n{i}" for i in ix) + "->no", cp.full(), *[x] * k)
    with torch.no_grad():
        assert_close(total, net(x), **TOL[dtype])
    # direct oracle: sum_i b_i sigma_i(a_i . x)
    t = x @ net.A1.detach().T
    direct = sum(net.A2.detach()[:, i] * sum(net.coeffs.detach()[i, k] * t[:, i:i + 1] ** k for k in range(4))
                 for i in range(4))
    with torch.no_grad():
        assert_close(net(x), direct, **TOL[dtype])


def test_trainable_activation_network_trains_and_refuses_bad_input():
    net = TrainableActivationNetwork((2, 3, 1), 2, seed=0)
    x, y = torch.randn(64, 2), torch.randn(64, 1)
    loss = ((net(x) - y) ** 2).mean(); loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    with pytest.raises(TypeError, match="x"): net(x.double())
    with pytest.raises(ValueError, match="x"): net(torch.randn(4, 3))
    with pytest.raises(ValueError, match="widths"): TrainableActivationNetwork((2, 3), 2)
    with pytest.raises(ValueError, match="degree"): TrainableActivationNetwork((2, 3, 1), 0)
    with pytest.raises(ValueError, match="k"): net.coefficient_tensor(3)


@pytest.mark.parametrize("d0,K", [(2, 3), (3, 2), (4, 4)])
def test_one_trainable_neuron_is_a_polynomial_of_one_linear_form(d0, K):
    assert activation_network_dimension((d0, 1, 1), K, seed=0).dimension == d0 + K


@pytest.mark.parametrize("w,K", [((2, 2, 1), 3), ((3, 3, 1), 3), ((3, 2, 2), 3), ((4, 3, 1), 4)])
def test_activation_dimensions_fixed_vs_trainable(w, K):
    fixed = activation_network_dimension(w, K, activation="fixed", seed=1)
    train = activation_network_dimension(w, K, seed=1)
    assert isinstance(train, ActivationDimension) and train.ambient == w[2] * math.comb(w[0] + K, K)
    assert fixed.dimension == min(fixed.n_params, fixed.ambient)
    refined = train.n_params - 2 * w[1] - sum(max(0, w[1] - w[2] * math.comb(w[0] + k - 1, k)) for k in range(K + 1))
    assert train.dimension == min(refined, train.ambient)
    assert polynomial_network_dimension(w, K, seed=1).dimension <= fixed.dimension < train.dimension or \
        fixed.dimension == fixed.ambient


@CUDA
@pytest.mark.gpu
def test_structured_and_trainable_networks_on_cuda():
    B = [circulant_basis(8, [0, 1], device="cuda"), circulant_basis(8, [0, 2], device="cuda")]
    hs = [torch.randn(2, dtype=torch.float64, device="cuda") for _ in B]
    P = structured_product(B, hs)
    assert P.device.type == "cuda"
    assert_close(P.cpu(), structured_product([b.cpu() for b in B], [h.cpu() for h in hs]))
    assert_close(torch.tensordot(lifting_operator(B), _outer(hs), dims=2), P)
    assert lifting_identifiability(B, seed=0).injective
    net = TrainableActivationNetwork((3, 2, 2), 3, dtype=torch.float64, seed=0)
    gpu = TrainableActivationNetwork((3, 2, 2), 3, dtype=torch.float64, seed=0, device="cuda")
    x = torch.randn(5, 3, dtype=torch.float64)
    with torch.no_grad():
        assert_close(gpu(x.cuda()).cpu(), net(x))


# ---------------------------------------------------------------- the stability constant of a lifting (issue 16)
from tensornn.expressivity import LiftingStability, circulant_basis, lifting_operator, lifting_stability, sparse_basis  # noqa: E402


def _pair_ratios(bases, n, gen):
    "||M(X - Y)|| / ||X - Y|| for n random pairs of rank-one tensors, and for n pairs a small step apart."
    M = lifting_operator(bases).reshape(-1, math.prod(B.shape[0] for B in bases))
    def outer(hs):
        X = hs[0]
        for h in hs[1:]: X = X[..., None] * h.reshape(h.shape[0], *([1] * (X.ndim - 1)), h.shape[1])
        return X.reshape(n, -1)
    a = [torch.randn(n, B.shape[0], generator=gen, dtype=torch.float64) for B in bases]
    out = []
    for b in ([torch.randn_like(x) for x in a], [x + 1e-3 * torch.randn_like(x) for x in a]):
        D = outer(a) - outer(b)
        out.append((D @ M.T).norm(dim=1) / D.norm(dim=1))
    return torch.cat(out)


@pytest.mark.parametrize("seed", range(4))
def test_lifting_stability_lower_bound_is_never_beaten(seed):
    "Random 2- and 3-layer liftings with a kernel: no pair of rank-one tensors has a ratio below the certificate."
    gen = torch.Generator().manual_seed(seed)
    for shapes in ([(3, 2, 4), (3, 2, 2)], [(2, 3, 2), (2, 1, 3), (3, 1, 1)]):
        bases = [torch.randn(*s, generator=gen, dtype=torch.float64) for s in shapes]
        st_ = lifting_stability(bases, seed=seed, n_starts=6, steps=100)
        assert isinstance(st_, LiftingStability) and 0 <= st_.lower <= st_.upper <= st_.operator_norm + 1e-12
        assert bool((_pair_ratios(bases, 2000, gen) >= st_.lower * (1 - 1e-9)).all())


def test_lifting_stability_known_constants():
    "Dilated convolutions: M / sqrt(n) is an isometry, gamma = sqrt(n); equal supports and dense layers: gamma = 0."
    for n in (8, 12):
        st_ = lifting_stability([circulant_basis(n, s) for s in ([0, 1], [0, 2], [0, 4])], seed=0, n_starts=4, steps=50)
        assert st_.lower == pytest.approx(math.sqrt(n), rel=1e-9) and st_.upper == pytest.approx(math.sqrt(n), rel=1e-9)
    for bases in ([circulant_basis(10, [0, 1])] * 2, [sparse_basis([(i, j) for i in range(2) for j in range(2)], (2, 2))] * 2):
        st_ = lifting_stability(bases, seed=0)
        assert st_.lower == 0.0 and st_.upper < 1e-6


def test_lifting_stability_certifies_a_kernel_without_small_rank_tensors():
    "A kernel spanned by an invertible 3x3 matrix misses every difference of rank-one tensors: gamma > 0 is certified."
    K = torch.eye(3, dtype=torch.float64).reshape(9)                   # the kernel direction: the identity, rank 3
    Q = torch.linalg.qr(torch.cat([K[:, None], torch.randn(9, 8, dtype=torch.float64,
                                                              generator=torch.Generator().manual_seed(0))], 1)).Q
    Mmat = Q[:, 1:].T                                                  # 8 x 9, orthonormal rows, kernel = span(I)
    bases = [torch.eye(3, dtype=torch.float64)[:, :, None], Mmat.reshape(8, 3, 3).permute(2, 0, 1).contiguous()]
    assert_close(lifting_operator(bases).reshape(8, 9), Mmat)
    st_ = lifting_stability(bases, seed=0)
    # exact: inf over unit Z of rank <= 2 of ||P_perp Z|| = sqrt(1 - 2/3), since <Z, I/sqrt 3>^2 <= 2/3
    assert st_.lower == pytest.approx(math.sqrt(1 / 3), rel=1e-9)
    assert st_.upper == pytest.approx(math.sqrt(1 / 3), rel=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_lifting_stability_on_gpu():
    st_ = lifting_stability([circulant_basis(8, s, device="cuda") for s in ([0, 1], [0, 2])], seed=0, n_starts=4)
    assert st_.lower == pytest.approx(math.sqrt(8), rel=1e-9)


# ---------------------------------------------------------------- X-rank uniqueness certificate (issue 16)
from tensornn.expressivity import ActivationUniqueness, activation_uniqueness  # noqa: E402


@pytest.mark.parametrize("w,K", [((3, 3, 3), 3), ((2, 3, 3), 3), ((3, 4, 4), 3), ((4, 5, 5), 3), ((3, 2, 2), 4)])
def test_activation_uniqueness_certified_implies_locally_identifiable(w, K):
    "Global uniqueness at generic parameters forces the Jacobian rank n_params - 2 d1 (only the rescalings remain)."
    u = activation_uniqueness(TrainableActivationNetwork(w, K, dtype=torch.float64, seed=1))
    assert isinstance(u, ActivationUniqueness) and u.unique
    jd = activation_network_dimension(w, K, seed=1)
    assert jd.dimension == jd.n_params - 2 * w[1]


def test_activation_uniqueness_refuses_non_unique_networks():
    "Two neurons on one direction, or a single output's constants, admit other decompositions: never certified."
    net = TrainableActivationNetwork((3, 3, 3), 3, dtype=torch.float64, seed=2)
    with torch.no_grad(): net.A1[1] = 2 * net.A1[0]                   # a_2 parallel to a_1: the atoms can be re-mixed
    u = activation_uniqueness(net)
    assert not u.directions_unique and not u.unique
    net = TrainableActivationNetwork((3, 3, 1), 3, dtype=torch.float64, seed=2)
    u = activation_uniqueness(net)
    assert u.directions_unique and not u.coefficients_unique[0] and not u.unique
    other = TrainableActivationNetwork((3, 3, 1), 3, dtype=torch.float64, seed=2)
    with torch.no_grad():                                             # move a constant from neuron 0 to neuron 1
        b = other.A2[0]
        other.coeffs[0, 0] += 0.7
        other.coeffs[1, 0] -= 0.7 * b[0] / b[1]
    x = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert_close(other(x), net(x))                                     # the same f ...
    assert not torch.allclose(other.coeffs, net.coeffs)                # ... from other atoms


def test_activation_uniqueness_kruskal_bookkeeping():
    "(2, 5, 5) with K = 4 fails every grouping (5 + 4 + 2 < 12, 5 + 3 + 3 < 12, 5 + 3 + 2 + 2 < 13) though locally identifiable."
    u = activation_uniqueness(TrainableActivationNetwork((2, 5, 5), 4, dtype=torch.float64, seed=0))
    assert u.degree is None and u.grouping == () and not u.directions_unique and all(u.coefficients_unique)
    u = activation_uniqueness(TrainableActivationNetwork((2, 3, 3), 3, dtype=torch.float64, seed=0))
    assert (u.degree, u.grouping) == (3, (2, 1))                       # 3 + 3 + 2 >= 2*3 + 2, while k = 2: 3 + 2 + 2 < 8
