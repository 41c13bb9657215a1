"""Tests of tensornn.compression: factorized layers, from_dense round trips, adapters, analysis helpers."""
import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import dataclasses

import numpy as np

import tensornn.compression as comp
from conftest import LargestResult
from tensornn.compression import (ComplexityTerms, CPConv2d, CPLinear, FactorizedConv2d, FactorizedLinear, LayerTerm,
                                  LoRALinear, NeuralCollapse, TensorAdapterLinear, TTConv2d, TTLinear, TuckerConv2d,
                                  TuckerLinear, add_adapters, complexity_terms, compress_model, count_parameters,
                                  effective_rank, factorize, merge_adapters, neural_collapse)
from tensornn.formats import CPTensor, TTTensor, TuckerTensor
from tensornn.testing import assert_close

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
DEVICES = ["cpu", pytest.param("cuda", marks=[CUDA, pytest.mark.gpu])]
DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: dict(rtol=2e-4, atol=2e-5), torch.float64: dict(rtol=1e-9, atol=1e-10)}

LINEAR_CASES = [  # (cls, in, out, rank, kwargs)
    (CPLinear, 24, 12, 5, dict()),
    (CPLinear, 24, 12, 5, dict(n_modes=1)),
    (CPLinear, 30, 8, 4, dict(in_modes=(2, 3, 5), out_modes=(2, 2, 2))),
    (TuckerLinear, 24, 12, 3, dict()),
    (TuckerLinear, 24, 12, (2, 3, 4, 5), dict()),
    (TuckerLinear, 30, 8, 2, dict(n_modes=3)),
    (TTLinear, 24, 12, 3, dict()),
    (TTLinear, 24, 12, (1, 2, 3, 1), dict(in_modes=(2, 3, 4), out_modes=(3, 2, 2))),
    (TTLinear, 6, 60, 2, dict(in_modes=(3, 2, 1), out_modes=(3, 4, 5))),        # sweeps left-to-right
]
CONV_CASES = [
    (CPConv2d, 6, dict()), (CPConv2d, 5, dict(stride=2, padding=1)),
    (TuckerConv2d, (3, 2), dict(padding=(1, 0), dilation=(1, 2))), (TuckerConv2d, 2, dict(stride=(2, 1))),
    (TTConv2d, 3, dict(padding=1)), (TTConv2d, 2, dict(stride=2, n_modes=1)),
]


def _x(shape, dtype, device, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)


def _formula_params(layer):
    "Parameter count from the formats' formulas, written out independently of the layer code."
    b = layer.bias.numel() if layer.bias is not None else 0
    if isinstance(layer, CPLinear):
        return layer.rank * (1 + sum(layer.in_modes) + sum(layer.out_modes)) + b
    if isinstance(layer, TuckerLinear):
        d = len(layer.out_modes)
        P, Q = layer.rank[:d], layer.rank[d:]
        return (math.prod(layer.rank) + sum(m * p for m, p in zip(layer.out_modes, P))
                + sum(n * q for n, q in zip(layer.in_modes, Q)) + b)
    if isinstance(layer, TTLinear):
        r = layer.rank
        return sum(r[k] * m * n * r[k + 1] for k, (m, n) in enumerate(zip(layer.out_modes, layer.in_modes))) + b
    if isinstance(layer, CPConv2d):
        return layer.rank * (1 + layer.in_channels + layer.out_channels + sum(layer.kernel_size)) + b
    if isinstance(layer, TuckerConv2d):
        (ro, ri), (kh, kw) = layer.rank, layer.kernel_size
        return ro * ri * kh * kw + ro * layer.out_channels + ri * layer.in_channels + b
    if isinstance(layer, TTConv2d):
        return _formula_params(layer.tt) + b
    raise AssertionError(type(layer))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LINEAR_CASES, ids=lambda c: f"{c[0].__name__}-{c[3]}-{sorted(c[4])}")
def test_linear_matches_its_dense_weight_and_counts(case, dtype, device):
    cls, n_in, n_out, rank, kw = case
    layer = cls(n_in, n_out, rank, dtype=dtype, device=device, seed=0, **kw)
    x = _x((3, 2, n_in), dtype, device)
    y = layer(x)
    assert y.shape == (3, 2, n_out) and y.dtype == dtype and y.device.type == device
    assert_close(y, x @ layer.full_weight().T + layer.bias, **TOL[dtype])
    assert layer.n_params == sum(p.numel() for p in layer.parameters()) == _formula_params(layer)
    assert layer.dense_params == n_in * n_out + n_out and layer.flops > 0


@pytest.mark.parametrize("case", LINEAR_CASES, ids=lambda c: f"{c[0].__name__}-{c[3]}-{sorted(c[4])}")
def test_linear_gradients_reach_every_factor(case):
    cls, n_in, n_out, rank, kw = case
    layer = cls(n_in, n_out, rank, dtype=torch.float64, seed=1, **kw)
    layer(_x((4, n_in), torch.float64, "cpu")).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0].__name__}-{sorted(c[2])}")
def test_conv_matches_its_dense_kernel_gradients_and_counts(case, dtype, device):
    cls, rank, kw = case
    geom = {k: v for k, v in kw.items() if k != "n_modes"}
    layer = cls(6, 4, 3, rank, dtype=dtype, device=device, seed=0, **kw)
    x = _x((2, 6, 9, 7), dtype, device)
    y = layer(x)
    assert_close(y, F.conv2d(x, layer.full_weight(), layer.bias, **geom), **TOL[dtype])
    assert layer.n_params == sum(p.numel() for p in layer.parameters()) == _formula_params(layer)
    assert layer.flops == layer.count_flops(9, 7) and layer.dense_flops == layer.count_dense_flops(9, 7)
    y.square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_full_rank_round_trips_linear(dtype, device):
    torch.manual_seed(0)
    lin = nn.Linear(24, 12, dtype=dtype, device=device)
    x = _x((5, 24), dtype, device)
    ref = lin(x)
    for d in (1, 2, 3):
        modes = factorize(12, d) + factorize(24, d)
        exact = math.prod(modes) // max(modes) if d > 1 else 12
        assert_close(CPLinear.from_dense(lin, exact, n_modes=d)(x), ref, **TOL[dtype])
        assert_close(TuckerLinear.from_dense(lin, 1000, n_modes=d)(x), ref, **TOL[dtype])
        assert_close(TTLinear.from_dense(lin, n_modes=d)(x), ref, **TOL[dtype])
    assert_close(TuckerLinear.from_dense(lin, 1000, method="hooi", n_iter=3)(x), ref, **TOL[dtype])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_full_rank_round_trips_conv(dtype, device):
    torch.manual_seed(0)
    x = _x((2, 6, 8, 8), dtype, device)
    for geom in [dict(padding=1), dict(stride=2, padding=(0, 1), dilation=(1, 2))]:
        conv = nn.Conv2d(6, 4, 3, dtype=dtype, device=device, **geom)
        ref = conv(x)
        assert_close(CPConv2d.from_dense(conv, 6 * 9)(x), ref, **TOL[dtype])
        assert_close(TuckerConv2d.from_dense(conv, 6)(x), ref, **TOL[dtype])
        assert_close(TTConv2d.from_dense(conv)(x), ref, **TOL[dtype])


@pytest.mark.filterwarnings("ignore:cp_als")
def test_low_rank_approximations_improve_with_rank():
    torch.manual_seed(0)
    lin = nn.Linear(64, 64, dtype=torch.float64)
    W = lin.weight.detach()
    for cls, ranks in ((CPLinear, (2, 8, 32)), (TuckerLinear, (2, 4, 6)), (TTLinear, (2, 8, 32))):
        with torch.no_grad():
            errs = [float((cls.from_dense(lin, r).full_weight() - W).norm() / W.norm()) for r in ranks]
        assert errs[0] > errs[1] > errs[2], (cls.__name__, errs)


def test_from_dense_low_rank_matrix_is_exact():
    g = torch.Generator().manual_seed(3)
    lin = nn.Linear(20, 16, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(16, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 20, generator=g, dtype=torch.float64))
    x = _x((4, 20), torch.float64, "cpu")
    assert_close(CPLinear.from_dense(lin, 3, n_modes=1)(x), lin(x), rtol=1e-9, atol=1e-10)
    assert_close(TuckerLinear.from_dense(lin, 3, n_modes=1)(x), lin(x), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,rank", [("lora", 3), ("tt", 2), ("cp", 3), ("tucker", 2)])
def test_adapters_start_at_base_train_only_themselves_and_merge_exactly(kind, rank, dtype, device):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 16), nn.ReLU(), nn.Sequential(nn.Linear(16, 12), nn.Tanh()),
                          nn.Linear(12, 4)).to(dtype=dtype, device=device)
    x = _x((6, 24), dtype, device)
    ref = model(x)
    names = add_adapters(model, r"^(0|2\.0)$", format=kind, rank=rank)
    assert names == ["0", "2.0"]
    assert_close(model(x), ref, **TOL[dtype])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".base." not in n and not n.startswith("3.") for n in trainable)
    assert count_parameters(model, trainable=True) == sum(model.get_submodule(n).n_trainable for n in names)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    for _ in range(3):
        opt.zero_grad(); model(x).square().mean().backward(); opt.step()
    out = model(x)
    assert not torch.allclose(out, ref)
    merged = merge_adapters(model)
    assert all(type(m) in (nn.Linear, nn.ReLU, nn.Tanh, nn.Sequential) for m in merged.modules())
    assert_close(merged(x), out, **TOL[dtype])


def test_lora_parameter_count_and_merge_formula():
    base = nn.Linear(10, 7, dtype=torch.float64)
    a = LoRALinear(base, 2, alpha=4.0, seed=0)
    assert a.n_trainable == 2 * (10 + 7) == sum(p.numel() for p in a.parameters() if p.requires_grad)
    with torch.no_grad(): a.lora_B.normal_()
    assert_close(a.merge().weight, base.weight + 2.0 * a.lora_B @ a.lora_A)
    t = TensorAdapterLinear(base, 2, format="tt", in_modes=(2, 5), out_modes=(1, 7), seed=0)
    assert t.n_trainable == 1 * 1 * 2 * 2 + 2 * 7 * 5 * 1


def test_compress_model_keeps_original_and_counts():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Unflatten(1, (1, 6, 6)), nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(144, 16), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(3, 36)
    for fmt in ("cp", "tucker", "tt"):
        small = compress_model(model, fmt, 2)
        assert type(model[1]) is nn.Conv2d and type(small[1]) is not nn.Conv2d
        assert count_parameters(small) < count_parameters(model)
        assert small(x).shape == (3, 4)
    only_lin = compress_model(model, "tt", 2, pattern=r"^4$")
    assert type(only_lin[1]) is nn.Conv2d and isinstance(only_lin[4], TTLinear) and type(only_lin[6]) is nn.Linear


def test_bad_ranks_and_shapes_name_the_argument():
    lin = nn.Linear(24, 12)
    with pytest.raises(ValueError, match="rank"): CPLinear(24, 12, 0)
    with pytest.raises(TypeError, match="rank"): CPLinear(24, 12, 2.5)
    with pytest.raises(ValueError, match=r"rank\[1\]"): TuckerLinear(24, 12, (2, 5, 2, 2), out_modes=(3, 4), in_modes=(4, 6))
    with pytest.raises(ValueError, match="rank"): TuckerLinear(24, 12, (2, 2, 2))
    with pytest.raises(ValueError, match=r"rank\[0\]"): TTLinear(24, 12, (1, 100, 1))
    with pytest.raises(ValueError, match="rank"): TTLinear(24, 12, (2, 2, 2))
    with pytest.raises(ValueError, match="in_modes"): TTLinear(24, 12, 2, in_modes=(5, 5))
    with pytest.raises(ValueError, match="out_modes"): TTLinear(24, 12, 2, in_modes=(4, 6), out_modes=(2, 2, 3))
    with pytest.raises(TypeError, match="in_modes"): CPLinear(24, 12, 2, in_modes=24)
    with pytest.raises(ValueError, match="in_features"): CPLinear(0, 12, 2)
    with pytest.raises(TypeError, match="layer"): CPLinear.from_dense(nn.Conv2d(2, 2, 3), 2)
    with pytest.raises(TypeError, match="layer"): CPConv2d.from_dense(lin, 2)
    with pytest.raises(ValueError, match="groups"): TuckerConv2d.from_dense(nn.Conv2d(4, 4, 3, groups=2), 2)
    with pytest.raises(ValueError, match="rank"): TuckerConv2d(4, 4, 3, (5, 2))
    # a core (3, 1, 1, 1) has mode-0 unfoldings of rank <= 1: no layer has these ranks (was accepted before)
    with pytest.raises(ValueError, match=r"rank\[0\]: expected a rank <= 1 in mode 0"):
        TuckerLinear(24, 12, (3, 1, 1, 1), out_modes=(3, 4), in_modes=(4, 6))
    assert TuckerLinear(32, 2, 8, out_modes=(1, 2), in_modes=(2, 16)).rank == (1, 2, 2, 4)   # the int is capped to fit
    assert TuckerConv2d(3, 8, 3, (8, 3)).rank == (8, 3)          # the spatial modes stay in the core: (8, 3, 3, 3) is fine
    with pytest.raises(ValueError, match="method"): TuckerLinear.from_dense(lin, 2, method="svd")
    with pytest.raises(ValueError, match="x"): CPLinear(24, 12, 2)(torch.randn(3, 23))
    with pytest.raises(ValueError, match="x"): CPConv2d(3, 4, 3, 2)(torch.randn(1, 2, 5, 5))
    with pytest.raises(ValueError, match="flops"): CPConv2d(3, 4, 3, 2).flops
    with pytest.raises(ValueError, match="rank"): LoRALinear(lin, 13)
    with pytest.raises(TypeError, match="base"): LoRALinear(nn.Conv2d(2, 2, 3), 2)
    with pytest.raises(ValueError, match="format"): TensorAdapterLinear(lin, 2, format="ht")
    with pytest.raises(ValueError, match="format"): add_adapters(nn.Sequential(lin), format="dora")
    with pytest.raises(ValueError, match="pattern"): add_adapters(nn.Sequential(lin), "nothing")
    with pytest.raises(ValueError, match="format"): compress_model(nn.Sequential(lin), "svd", 2)
    with pytest.raises(ValueError, match="n"): factorize(0, 2)


def test_factorize():
    assert factorize(256, 2) == (16, 16) and factorize(10, 2) == (2, 5) and factorize(7, 3) == (1, 1, 7)
    for n in range(1, 200):
        for d in (1, 2, 3):
            f = factorize(n, d)
            assert len(f) == d and math.prod(f) == n


def test_neural_collapse_and_effective_rank():
    g = torch.Generator().manual_seed(0)
    C, p = 5, 8
    Q = torch.linalg.qr(torch.randn(p, C, generator=g, dtype=torch.float64))[0]
    means = (torch.eye(C, dtype=torch.float64) - 1.0 / C) @ Q.T
    labels = torch.arange(C).repeat(4)
    nc = neural_collapse(means[labels], labels, 3.0 * means)
    assert all(float(v) < 1e-9 for v in dataclasses.asdict(nc).values()), nc
    noisy = neural_collapse(means[labels] + 0.5 * torch.randn(20, p, generator=g, dtype=torch.float64), labels, means)
    assert float(noisy.nc1) > 1e-2
    assert abs(float(effective_rank(means)) - (C - 1)) < 1e-8
    with pytest.raises(ValueError, match="labels"): neural_collapse(means[labels], labels[:-1], means)
    with pytest.raises(ValueError, match="weight"): neural_collapse(means[labels], labels, means[:, :3])


@pytest.mark.filterwarnings("ignore:cp_als")
def test_complexity_terms_grow_with_rank():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Unflatten(1, (1, 6, 6)), nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(144, 10))
    t = [complexity_terms(compress_model(model, "cp", r, n_modes=1), 100) for r in (1, 2, 4)]
    assert t[0].li2020 < t[1].li2020 < t[2].li2020
    assert t[0].wang2024 <= t[1].wang2024 <= t[2].wang2024
    li1 = 1 * (1 + 4 + 9) + 1 * (144 + 10)
    assert abs(t[0].li2020 - math.sqrt(li1 / 100)) < 1e-12
    with pytest.raises(ValueError, match="n_samples"): complexity_terms(model, 0)


def test_tt_linear_agrees_with_tensorly_torch_blocktt():
    "Peer oracle: tensorly-torch's BlockTT layer with the same cores computes the same map."
    tltorch = pytest.importorskip("tltorch")
    torch.manual_seed(0)
    tl = tltorch.FactorizedLinear(in_tensorized_features=(2, 3, 4), out_tensorized_features=(3, 1, 5),
                                  factorization="blocktt", rank=3, bias=True).double()
    ours = TTLinear(24, 15, 3, in_modes=(2, 3, 4), out_modes=(3, 1, 5), dtype=torch.float64, seed=0)
    assert [tuple(f.shape) for f in tl.weight.factors] == [tuple(G.shape) for G in ours.cores]
    with torch.no_grad():
        for G, f in zip(ours.cores, tl.weight.factors): G.copy_(f)
        ours.bias.copy_(tl.bias)
    x = _x((7, 24), torch.float64, "cpu")
    assert_close(ours(x), tl(x), rtol=1e-10, atol=1e-12)
    assert_close(ours.full_weight(), tl.weight.to_matrix(), rtol=1e-10, atol=1e-12)


def test_tt_linear_plans_follow_the_cost_model():
    opt_einsum = pytest.importorskip("opt_einsum")
    from tensornn.compression import _keeps_weight_factored, _tt_einsum_eq
    assert not _keeps_weight_factored([(1, 2), (1, 2), (0, 1)], 3)        # joins G0, G1 then G2 without x
    assert _keeps_weight_factored([(0, 3), (0, 1), (0, 1)], 3)             # x.G2, then G0.G1, then the rest
    layer = TTLinear(1024, 1024, 16, in_modes=(8, 8, 16), out_modes=(8, 8, 16), dtype=torch.float64, seed=0)
    assert layer.weight_flops == 2 * 64 * 16 * 64 * 16 + 2 * 4096 * 16 * 256
    x = _x((16, 1024), torch.float64, "cpu")
    y = layer(x)
    assert layer._plans[(16, True)] not in (None, "dense")                 # this shape uses an opt_einsum path
    assert_close(y, x @ layer.full_weight().T + layer.bias, rtol=1e-9, atol=1e-10)
    assert layer._plan(1) is None                                          # batch 1: the sweep
    for B in (256, 1024):      # opt_einsum's best order joins all three cores: refused; the explicit rebuild wins
        path, _ = opt_einsum.contract_path(_tt_einsum_eq(3), (B, 8, 8, 16), *[tuple(G.shape) for G in layer.cores],
                                           shapes=True, optimize="optimal")
        assert not _keeps_weight_factored(path, 3) and layer._plan(B) == "dense"
    x = _x((256, 1024), torch.float64, "cpu")
    y = layer(x)
    assert_close(y, x @ layer.full_weight().T + layer.bias, rtol=1e-9, atol=1e-10)
    y.square().sum().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in layer.parameters())


def _flop_only(layer, B):
    "The layer's plan costs with the memory charge set to zero: the FLOP counts alone."
    saved = dict(comp._MOVE_COST)
    comp._MOVE_COST.update({k: 0 for k in saved})
    try:
        return layer._plan_costs(B)
    finally:
        comp._MOVE_COST.update(saved)


def test_tt_linear_memory_charge_moves_large_batches_to_the_rebuild():
    "Rank 4 has 4.6x fewer FLOPs per row than dense; from the batch where its intermediates reach 8 MiB, the model rebuilds."
    layer = TTLinear(1024, 1024, 4, in_modes=(8, 8, 16), out_modes=(8, 8, 16), seed=0)
    assert layer.flops * 4 < layer.dense_flops
    for B in (1, 16, 64, 256):                    # every tensor below 8 MiB: the FLOP counts, and the sweep
        assert _flop_only(layer, B) == layer._plan_costs(B) and layer._plan(B) is None
    big = layer._plan_costs(4096)                 # the first step writes (64 * 64, 4096) floats: 64 MiB
    assert big["sweep"] > _flop_only(layer, 4096)["sweep"] + 512 * 64 * 64 * 4096
    assert _flop_only(layer, 4096)["sweep"] < _flop_only(layer, 4096)["dense"] and layer._plan(4096) == "dense"
    wide = TTLinear(1024, 1024, 4, in_modes=(8, 8, 16), out_modes=(8, 8, 16), seed=0, dtype=torch.float64)
    assert wide._plan_costs(256)["sweep"] > layer._plan_costs(256)["sweep"]      # float64: 8 MiB is half the elements
    x = _x((4096, 1024), torch.float32, "cpu")
    assert_close(layer(x), x @ layer.full_weight().T + layer.bias, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("modes,rank", [((8, 8, 16), 4), ((8, 8, 16), 16), ((4, 4, 4, 4), 12), ((16, 16, 16), 8),
                                        ((2, 3, 4), 6), ((32, 32), 24)])
def test_tt_linear_rebuilds_the_weight_only_where_the_model_says_it_is_cheaper(modes, rank):
    "The factored path is kept whenever the model finds it cheaper; the rebuild is taken only with a 25% saving."
    layer = TTLinear(math.prod(modes), math.prod(modes), rank, in_modes=modes, out_modes=modes, seed=0)
    x = _x((7, layer.in_features), torch.float32, "cpu")
    for B in (1, 2, 8, 32, 128, 512, 2048):
        costs, plan = layer._plan_costs(B), layer._plan(B)
        c = {k: v[0] if isinstance(v, tuple) else v for k, v in costs.items()}
        if plan == "dense":
            assert c["dense"] < 0.75 * c["sweep"] and c["dense"] <= min(c.values())
        else:
            assert c["dense"] >= 0.75 * c["sweep"] or c["dense"] > min(c.values())
        flop_costs = _flop_only(layer, B)
        if flop_costs == costs and layer.flops <= layer.dense_flops:
            assert plan != "dense"             # no large tensor and fewer FLOPs per row: never rebuilt
    big = _x((512, layer.in_features), torch.float32, "cpu")
    assert_close(layer(big), big @ layer.full_weight().T + layer.bias, rtol=1e-4, atol=1e-4)


ALL_LAYERS = [
    lambda dt: CPLinear(48, 40, 3, dtype=dt, seed=0),
    lambda dt: CPLinear(48, 40, 3, n_modes=1, dtype=dt, seed=0),
    lambda dt: TuckerLinear(48, 40, 2, dtype=dt, seed=0),
    lambda dt: TTLinear(48, 40, 3, n_modes=3, dtype=dt, seed=0),
    lambda dt: CPConv2d(6, 8, 3, 3, padding=1, dtype=dt, seed=0),
    lambda dt: TuckerConv2d(6, 8, 3, 2, dtype=dt, seed=0),
    lambda dt: TTConv2d(6, 8, 3, 2, dtype=dt, seed=0),
]


@pytest.mark.parametrize("make", ALL_LAYERS, ids=lambda m: type(m(torch.float64)).__name__)
def test_forward_and_backward_never_build_the_dense_weight(make, monkeypatch):
    "Where the factored path is cheaper (every layer here, at this batch): no call of full_weight, and no tensor saved for backward with the dense weight's shape or (linear) size."
    layer = make(torch.float64)
    linear = hasattr(layer, "in_features")
    dense_shape = ((layer.out_features, layer.in_features) if linear else
                   (layer.out_channels, layer.in_channels, *layer.kernel_size))
    x = _x((2, layer.in_features) if linear else (1, 6, 5, 5), torch.float64, "cpu").requires_grad_()   # so matmuls save both operands

    def forbidden(*a, **k): raise AssertionError("forward called full_weight")
    monkeypatch.setattr(type(layer), "full_weight", forbidden)
    if isinstance(layer, TTConv2d): monkeypatch.setattr(TTLinear, "full_weight", forbidden)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append((tuple(t.shape), t.numel())) or t, lambda t: t):
        y = layer(x)
    y.sum().backward()
    n_dense = math.prod(dense_shape)
    for shape, numel in saved:
        assert shape not in (dense_shape, dense_shape[::-1]), shape
        if linear: assert numel < n_dense, shape


@pytest.mark.parametrize("kind,rank", [("lora", 2), ("tt", 2), ("cp", 2), ("tucker", 2)])
def test_adapter_gradients_reach_every_factor_after_the_first_step(kind, rank):
    "One factor starts at zero (so the update does); after one step every adapter factor receives a gradient."
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 6)).double()
    add_adapters(model, format=kind, rank=rank)
    x = _x((5, 12), torch.float64, "cpu")
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        opt.zero_grad(); model(x).sin().sum().backward(); opt.step()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
        else:
            assert ".base." in name and p.grad is None, name


def test_bad_inputs_of_forward_and_helpers_name_the_argument():
    lin = nn.Linear(24, 12)
    for layer in (CPLinear(24, 12, 2), TuckerLinear(24, 12, 2), TTLinear(24, 12, 2)):
        with pytest.raises(TypeError, match=r"^x: expected dtype torch.float32"):
            layer(torch.randn(3, 24, dtype=torch.float64))
    for layer in (CPConv2d(3, 4, 3, 2), TuckerConv2d(3, 4, 3, 2), TTConv2d(3, 4, 3, 2)):
        with pytest.raises(TypeError, match=r"^x: expected dtype"):
            layer(torch.randn(1, 3, 5, 5, dtype=torch.float64))
        with pytest.raises(ValueError, match=r"^x: spatial size"):
            layer(torch.randn(1, 3, 2, 5))
    with pytest.raises(ValueError, match="^alpha"): LoRALinear(lin, 2, alpha=0)
    with pytest.raises(ValueError, match="^alpha"): TensorAdapterLinear(lin, 2, alpha=float("nan"))
    with pytest.raises(TypeError, match="^alpha"): LoRALinear(lin, 2, alpha="1")
    with pytest.raises(TypeError, match="^pattern"): add_adapters(nn.Sequential(lin), 3)
    with pytest.raises(ValueError, match="^pattern"): add_adapters(nn.Sequential(lin), "(")
    with pytest.raises(ValueError, match="^pattern"): compress_model(nn.Sequential(lin), "tt", 2, pattern="[")
    for fn in (count_parameters, merge_adapters, lambda m: complexity_terms(m, 10), lambda m: add_adapters(m)):
        with pytest.raises(TypeError, match="^model"): fn([lin])


# ---- issue 9: layers hold a format, one validation path, defects, one name per concept, reports ----

FORMAT_OF = {CPLinear: CPTensor, TuckerLinear: TuckerTensor, TTLinear: TTTensor,
             CPConv2d: CPTensor, TuckerConv2d: TuckerTensor, TTConv2d: TTTensor}


@pytest.mark.parametrize("make", ALL_LAYERS, ids=lambda m: type(m(torch.float64)).__name__)
def test_layers_hold_a_format_and_full_weight_goes_through_it(make, monkeypatch):
    "Fails on the old code: there was no to_format, and TTLinear.full_weight repeated tt_full."
    layer = make(torch.float64)
    fmt = layer.to_format()
    assert type(fmt) is FORMAT_OF[type(layer)]
    assert_close(fmt.full().reshape(-1).norm(), layer.full_weight().norm(), rtol=1e-12, atol=1e-12)
    tensors = fmt._tensors()
    assert any(t is p for t in tensors for p in layer.parameters()) or isinstance(layer, (TTLinear, TTConv2d))
    fmt.full().square().sum().backward()                          # the format shares the layer's parameters
    assert all(p.grad is not None for n, p in layer.named_parameters() if n != "bias")
    monkeypatch.setattr(type(fmt), "full", lambda self: (_ for _ in ()).throw(RuntimeError("went through the format")))
    with pytest.raises(RuntimeError, match="went through the format"): layer.full_weight()


def test_linear_and_conv_layers_share_their_scaffolding():
    "Fails on the old code: n_params, dense_params and the ratio were written twice."
    for name in ("n_params", "dense_params", "compression", "full_weight", "to_format", "_init_common"):
        assert getattr(FactorizedLinear, name) is getattr(FactorizedConv2d, name), name
    conv = CPConv2d(6, 8, 3, 3, dtype=torch.float64, seed=0)
    assert conv.dense_params == 8 * 6 * 9 + 8 and conv.compression == conv.dense_params / conv.n_params


def test_compression_is_the_formats_word():
    "Fails on the old code: layers said .compression_ratio where the formats say .compression."
    for layer in (CPLinear(24, 12, 3, bias=False), TuckerLinear(24, 12, 2, bias=False), TTLinear(24, 12, 2, bias=False),
                  CPConv2d(6, 8, 3, 3, bias=False)):
        assert layer.compression == pytest.approx(layer.to_format().compression)
    assert not hasattr(CPLinear(24, 12, 3), "compression_ratio")


@pytest.mark.parametrize("make", ALL_LAYERS, ids=lambda m: type(m(torch.float64)).__name__)
def test_empty_batch(make):
    "Fails on the old code for TuckerLinear, TTLinear and TTConv2d: 'cannot reshape tensor of 0 elements'."
    layer = make(torch.float64)
    if isinstance(layer, FactorizedLinear):
        x = torch.zeros(0, layer.in_features, dtype=torch.float64)
        assert layer(x).shape == (0, layer.out_features)
        assert layer(torch.zeros(2, 0, layer.in_features, dtype=torch.float64)).shape == (2, 0, layer.out_features)
    else:
        x = torch.zeros(0, 6, 5, 5, dtype=torch.float64)
        assert layer(x).shape[0] == 0 and layer(x).shape[1] == 8


def test_wide_tt_layer_empty_batch_reverse_sweep():
    layer = TTLinear(6, 60, 2, in_modes=(3, 2, 1), out_modes=(3, 4, 5), dtype=torch.float64, seed=0)
    assert layer._reverse and layer(torch.zeros(0, 6, dtype=torch.float64)).shape == (0, 60)


def test_numpy_integers_and_dtype_names_are_accepted():
    "Fails on the old code: np.int64 sizes were rejected and dtype='float32' dumped torch's signature list."
    i = np.int64
    assert factorize(i(12), i(2)) == (3, 4)
    for cls, rank in ((CPLinear, i(3)), (TuckerLinear, np.array([2, 2, 2, 2])), (TTLinear, i(2))):
        layer = cls(i(24), i(12), rank, n_modes=i(2), dtype="float32", seed=i(0))
        assert all(p.dtype == torch.float32 for p in layer.parameters())
        assert layer(torch.randn(3, 24)).shape == (3, 12)
    assert TTConv2d(i(6), i(8), i(3), i(2), padding=i(1), dtype="float64").tt.cores[0].dtype == torch.float64
    with pytest.raises(TypeError, match="^dtype"): TTLinear(24, 12, 2, dtype="float33")
    with pytest.raises(ValueError, match="^device"): CPLinear(24, 12, 2, device="gpu0")


def test_effective_rank_of_zero_is_zero():
    "Fails on the old code: NaN."
    assert float(effective_rank(torch.zeros(4, 5))) == 0.0
    assert float(effective_rank(torch.zeros(2, 3, 3, dtype=torch.float64))) == 0.0


def test_neural_collapse_undefined_cases_raise():
    "Fails on the old code: one class (and coinciding means) returned NaN."
    f = torch.randn(6, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="^weight: expected at least 2 classes"):
        neural_collapse(f, torch.zeros(6, dtype=torch.long), torch.randn(1, 3, dtype=torch.float64))
    same = torch.ones(6, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="^features"):
        neural_collapse(same, torch.arange(2).repeat(3), torch.randn(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="^weight: expected a nonzero"):
        neural_collapse(f, torch.arange(2).repeat(3), torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="^labels"):
        neural_collapse(f, torch.tensor([0, 1, 0, 1, 0, -1]), torch.randn(2, 3, dtype=torch.float64))


def test_analysis_functions_return_dataclasses():
    "Fails on the old code: dicts."
    g = torch.Generator().manual_seed(0)
    f, lab = torch.randn(12, 4, generator=g, dtype=torch.float64), torch.arange(3).repeat(4)
    nc = neural_collapse(f, lab, torch.randn(3, 4, generator=g, dtype=torch.float64))
    assert isinstance(nc, NeuralCollapse) and dataclasses.is_dataclass(nc) and isinstance(nc.nc1, float)
    t = complexity_terms(nn.Sequential(nn.Linear(4, 3)), 10)
    assert isinstance(t, ComplexityTerms) and isinstance(t.layers[0], LayerTerm) and t.layers[0].name == "0"


def test_complexity_terms_count_a_tt_conv_once():
    "Fails on the old code: the TTConv2d and its inner TTLinear were both counted."
    torch.manual_seed(0)
    model = nn.Sequential(nn.Unflatten(1, (1, 6, 6)), nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(144, 10))
    dense = complexity_terms(model, 100)
    comp = compress_model(model, "tt", 1000)                      # exact: same weights, same matrix ranks
    t = complexity_terms(comp, 100)
    assert [l.name for l in t.layers] == ["1", "4"]
    assert [l.matrix_rank for l in t.layers] == [l.matrix_rank for l in dense.layers]
    assert t.wang2024 == pytest.approx(dense.wang2024)


def test_complexity_terms_count_an_adapter_once_with_its_merged_weight():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))
    add_adapters(model, format="lora", rank=2)
    t = complexity_terms(model, 10)
    assert [l.name for l in t.layers] == ["0", "2"]


def test_add_adapters_kind_is_a_deprecated_alias_of_format():
    model = nn.Sequential(nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))
    with pytest.warns(DeprecationWarning, match="format="):
        names = add_adapters(model, kind="tt", rank=2)
    assert names == ["0", "2"] and isinstance(model[0], TensorAdapterLinear) and model[0].format == "tt"


# ---------------------------------------------------------------- t-product (t-NN) layers
from tensornn.compression import TProductLinear  # noqa: E402
from tensornn.theory import t_product  # noqa: E402


@pytest.mark.parametrize("c_in,c_out,k,r", [(3, 4, 5, 2), (2, 2, 1, 2), (4, 3, 6, 3), (5, 7, 8, 1)])
def test_tproduct_layer_is_the_t_product_with_each_input(c_in, c_out, k, r):
    layer = TProductLinear(c_in, c_out, k, r, dtype=torch.float64, seed=0)
    x = torch.randn(6, c_in * k, dtype=torch.float64)
    # the definition, sample by sample: Y = W * X with X of shape (c_in, 1, k)
    ref = torch.stack([t_product(layer.t_weight(), xi.reshape(c_in, 1, k)).reshape(-1) for xi in x]) + layer.bias
    assert_close(layer(x), ref.detach())
    assert_close(layer(x), (x @ layer.full_weight().T + layer.bias).detach())
    assert layer.tubal_rank() == r and layer.n_params == r * k * (c_in + c_out) + c_out * k


def test_tproduct_layer_keeps_leading_dims_dtype_and_trains():
    layer = TProductLinear(3, 4, 5, 2, seed=1)
    x = torch.randn(2, 3, 15)
    y = layer(x)
    assert y.shape == (2, 3, 20) and y.dtype == torch.float32
    y.square().sum().backward()
    assert layer.U.grad is not None and torch.isfinite(layer.V.grad).all()


@pytest.mark.parametrize("r", [1, 2, 3])
def test_tproduct_from_dense_is_the_truncated_t_svd(r):
    src = TProductLinear(4, 5, 6, 4, dtype=torch.float64, seed=3)
    dense = nn.Linear(24, 30, dtype=torch.float64)
    with torch.no_grad():
        dense.weight.copy_(src.full_weight() + 0.0); dense.bias.copy_(src.bias)
    got = TProductLinear.from_dense(dense, 6, r)
    s = src.fourier_singular_values()                       # (4, 4) slices for k = 6: 0 and 3 self-conjugate
    mult = torch.tensor([1.0, 2.0, 2.0, 1.0], dtype=torch.float64)
    lost = ((s[:, r:] ** 2).sum(1) * mult).sum() / 6
    assert_close((got.t_weight() - src.t_weight()).norm() ** 2, lost, rtol=1e-8, atol=1e-10)
    assert got.tubal_rank() == r


def test_tproduct_from_dense_projects_onto_block_circulant():
    dense = nn.Linear(12, 8, dtype=torch.float64)
    layer = TProductLinear.from_dense(dense, 4, 2)         # full tubal rank: only the circulant projection acts
    P = layer.full_weight()
    # the residual is orthogonal to every block-circulant matrix, in particular to P itself
    assert abs(float(((dense.weight - P) * P).sum())) < 1e-10


@pytest.mark.parametrize("device", DEVICES)
def test_tproduct_layer_on_device(device):
    cpu = TProductLinear(3, 4, 5, 2, dtype=torch.float64, seed=0)
    dev = TProductLinear(3, 4, 5, 2, dtype=torch.float64, seed=0, device=device)
    dev.load_state_dict(cpu.state_dict())
    x = torch.randn(3, 15, dtype=torch.float64)
    assert_close(dev(x.to(device)).cpu(), cpu(x).detach())


# ---------------------------------------------------------------- quantization, pruning, bytes
from tensornn.compression import parameter_bytes, prune_weights, quantize_weights  # noqa: E402


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("granularity", ["channel", "tensor"])
def test_quantize_weights_uses_at_most_2_pow_bits_minus_1_levels(bits, granularity):
    net = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), TTLinear(12, 8, 2, seed=0), CPLinear(8, 4, 3, seed=0))
    q = quantize_weights(net, bits, granularity=granularity)
    for p, w in zip(net.parameters(), q.parameters()):
        if p.ndim < 2:
            assert torch.equal(p, w); continue
        rows = w.detach().reshape(w.shape[0], -1) if granularity == "channel" else w.detach().reshape(1, -1)
        for row, orig in zip(rows, p.detach().reshape(rows.shape)):
            assert len(torch.unique(row)) <= 2 ** bits - 1
            top = 2 ** (bits - 1) - 1
            step = orig.abs().max() / top if granularity == "channel" else p.detach().abs().max() / top
            assert float((row - orig).abs().max()) <= float(step) / 2 + 1e-6     # nearest level
    assert all(p.requires_grad for p in q.parameters()) and q is not net


def test_quantize_then_run_stays_close_at_8_bits():
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    x = torch.randn(64, 20)
    with torch.no_grad():
        err = (quantize_weights(net, 8)(x) - net(x)).norm() / net(x).norm()
    assert float(err) < 0.02


def test_prune_weights_keeps_the_largest_entries():
    net = nn.Linear(10, 10)
    pr = prune_weights(net, 0.7)
    w, v = net.weight.detach().abs().flatten(), pr.weight.detach().flatten()
    assert int((v == 0).sum()) == 70
    assert float(w[v != 0].min()) >= float(w[v == 0].max())
    assert torch.equal(pr.bias, net.bias)


def test_parameter_bytes_counts():
    net = nn.Sequential(nn.Linear(8, 4), CPLinear(4, 2, 3, n_modes=1, seed=0))
    n_w = 32 + 4 * 3 + 2 * 3                                # dense weight, CP factors
    n_float = 4 + 3 + 2                                     # biases and CP weights
    assert parameter_bytes(net) == 4 * (n_w + n_float)
    assert parameter_bytes(net, 4) == math.ceil(n_w / 2) + 4 * (4 + 2 + 4) + 4 * n_float   # scales: one per first-axis slice
    assert parameter_bytes(net, 4, granularity="tensor") == math.ceil(n_w / 2) + 4 * 3 + 4 * n_float
    sparse = prune_weights(nn.Linear(8, 4), 0.75)
    assert parameter_bytes(sparse, sparse=True) == 8 * (4 + 2) + 16


# ---------------------------------------------------------------- sensitivity of CP layers (degeneracy control)
from tensornn.compression import cp_sensitivity, cp_sensitivity_penalty  # noqa: E402


def test_cp_sensitivity_of_orthogonal_terms_is_the_mode_sizes_times_rank():
    # unit-norm, mutually orthogonal terms of equal weight: each mode contributes I_n * R * w^2 / (R w^2) = I_n per term
    Q = [torch.linalg.qr(torch.randn(n, 3, dtype=torch.float64))[0] for n in (4, 5, 6)]
    x = CPTensor(torch.full((3,), 2.0, dtype=torch.float64), Q)
    assert abs(float(cp_sensitivity(x)) - (4 + 5 + 6)) < 1e-10


def test_cp_sensitivity_is_scale_invariant_and_grows_with_cancellation():
    g = torch.Generator().manual_seed(0)
    x = CPTensor(torch.ones(2, dtype=torch.float64), [torch.randn(n, 2, generator=g, dtype=torch.float64) for n in (3, 4, 5)])
    y = CPTensor(7.0 * x.weights, x.factors)
    assert abs(float(cp_sensitivity(x)) - float(cp_sensitivity(y))) < 1e-9 * float(cp_sensitivity(x))
    a = torch.randn(4, 1, generator=g, dtype=torch.float64)
    sens = [float(cp_sensitivity(CPTensor(torch.tensor([c, -c], dtype=torch.float64),
                                          [torch.cat([a, a + 0.1 * torch.ones_like(a)], 1)] * 3))) for c in (1.0, 10.0)]
    assert sens[0] == pytest.approx(sens[1], rel=1e-9)       # the weight scale cancels; the near-cancellation does not
    assert sens[0] > 100


def test_cp_sensitivity_penalty_is_differentiable_and_sums_layers():
    net = nn.Sequential(CPLinear(12, 6, 3, n_modes=1, seed=0), nn.ReLU(), CPLinear(6, 4, 2, n_modes=1, seed=1))
    p = cp_sensitivity_penalty(net)
    assert abs(float(p) - sum(float(cp_sensitivity(m.to_format())) for m in (net[0], net[2]))) < 1e-5
    p.backward()
    assert all(q.grad is not None for q in net[0].parameters() if q.requires_grad and q is not net[0].bias)


# --- stable CP (after Phan et al. 2020) and geometry-aware Tucker training (after Zangrando et al. 2024) ---
from tensornn.compression import GeometryAwareTucker, cp_sensitivity, stable_cp_als  # noqa: E402
from tensornn.decompositions import cp_als  # noqa: E402


@pytest.mark.parametrize("shape,rank,penalty", [((8, 6, 3, 3), 8, 1e-4), ((6, 5, 4), 6, 1e-3), ((7, 4, 3, 3), 3, 1e-2)])
def test_stable_cp_als_objective_is_monotone_and_lowers_sensitivity(shape, rank, penalty):
    T = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(sum(shape)))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        plain, prec = cp_als(T, rank, n_iter=200, seed=0)
    for init in (plain, "svd", "random"):
        st, rec = stable_cp_als(T, rank, penalty=penalty, init=init, seed=1, n_iter=150)
        ob = rec.info["objective"]
        assert all(b <= a * (1 + 1e-10) for a, b in zip(ob, ob[1:])), init       # exact block minimisation
        # the objective recomputed independently from the returned (normalised) CP tensor
        w2 = (st.weights ** 2).sum()
        indep = ((T - st.full()).pow(2).sum() + penalty * sum(shape) * w2) / T.pow(2).sum()
        assert abs(float(indep) / ob[-1] - 1) < 1e-8
        assert abs(float(cp_sensitivity(st)) / rec.info["sensitivity"][-1] - 1) < 1e-8
    st, rec = stable_cp_als(T, rank, penalty=penalty, init=plain)
    assert float(cp_sensitivity(st)) < float(cp_sensitivity(plain))               # lower than plain ALS at equal rank
    # and the penalised objective of the stable fit is below that of the plain fit (it minimises it from there)
    F_of = lambda cp: float(((T - cp.full()).pow(2).sum() + penalty * sum(shape) * (cp.weights ** 2).sum()) / T.pow(2).sum())
    assert F_of(st) <= F_of(plain) * (1 + 1e-10)


def test_stable_cp_als_without_penalty_is_als_and_recovers_an_exact_tensor():
    g = torch.Generator().manual_seed(0)
    true = CPTensor(torch.ones(3, dtype=torch.float64), [torch.randn(n, 3, generator=g, dtype=torch.float64) for n in (6, 5, 4)])
    st, rec = stable_cp_als(true.full(), 3, penalty=0.0, init="svd", n_iter=500, tol=1e-14)
    assert rec.final_error < 1e-6
    st, rec = stable_cp_als(true.full(), 3, penalty=1e-2, init="svd", n_iter=300)
    assert 1e-4 < rec.final_error < 0.2                                     # the penalty trades error for sensitivity
    assert st.weights.dtype == torch.float64 and rec.info["penalty"] == 1e-2


def _teacher(ranks, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = TuckerTensor(torch.randn(ranks, generator=g, dtype=torch.float64),
                     [torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64))[0] for r in ranks]).full()
    W = W.reshape(n * n, n * n)
    X = torch.randn(256, n * n, generator=g, dtype=torch.float64)
    return 4 * W / W.norm(), X


def _orthonormal(layer):
    return all(torch.allclose(U.T @ U, torch.eye(U.shape[1], dtype=U.dtype), atol=1e-10)
               for U in (*layer.out_factors, *layer.in_factors))


@pytest.mark.parametrize("teacher_rank,start", [((2, 3, 3, 2), 1), ((2, 3, 3, 2), 4), ((1, 1, 1, 1), 3)])
def test_geometry_aware_ranks_adapt_to_the_teacher_and_loss_falls(teacher_rank, start):
    W, X = _teacher(teacher_rank)
    net = nn.Sequential(TuckerLinear(16, 16, start, bias=False, dtype=torch.float64, seed=1))
    opt = GeometryAwareTucker(net, 1.0, tau=0.05)
    closure = lambda: (net(X) - X @ W.T).pow(2).mean()
    first = float(opt.step(closure))
    ranks = []
    for _ in range(150):
        last = opt.step(closure)
        ranks.append(net[0].rank)
        assert _orthonormal(net[0])
    assert net[0].rank == teacher_rank and opt.ranks == [teacher_rank]
    if start < max(teacher_rank): assert any(max(r) > start for r in ranks)        # grew
    assert float(last) < 1e-3 * first
    assert net[0].n_params == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("tau", [1e-9, 0.05, 0.3, 0.6])
def test_geometry_aware_truncation_respects_tau(tau):
    net = nn.Sequential(TuckerLinear(16, 12, 3, bias=False, dtype=torch.float64, seed=2))
    opt = GeometryAwareTucker(net, 0.5, tau=tau)
    W0, r0 = net[0].full_weight().detach(), net[0].rank
    opt.step(lambda: 0.0 * net(torch.ones(2, 16, dtype=torch.float64)).sum())          # zero gradient: only truncation acts
    change = float((net[0].full_weight() - W0).norm())
    assert change <= tau * float(W0.norm()) + 1e-10
    if tau < 1e-6: assert net[0].rank == r0 and change < 1e-10
    if tau >= 0.6: assert sum(net[0].rank) < sum(r0)                                   # a large tolerance must cut
    assert _orthonormal(net[0])


def test_geometry_aware_sgd_on_other_parameters_and_max_rank():
    torch.manual_seed(0)
    net = nn.Sequential(TuckerLinear(12, 8, 2, dtype=torch.float64, seed=0), nn.Tanh(), nn.Linear(8, 3, dtype=torch.float64))
    x = torch.randn(10, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    loss_fn = lambda: net(x).pow(2).sum()
    lin_w, lin_b, bias = net[2].weight.detach().clone(), net[2].bias.detach().clone(), net[0].bias.detach().clone()
    W0 = net[0].full_weight().detach()
    gw, gb, gbias = torch.autograd.grad(loss_fn(), [net[2].weight, net[2].bias, net[0].bias])
    opt = GeometryAwareTucker(net, 0.01, tau=0.0, max_rank=3)
    assert_close(net[0].full_weight(), W0)                                         # orthonormalising keeps the weight
    loss = opt.step(loss_fn)
    assert loss.ndim == 0 and not loss.requires_grad
    assert_close(net[2].weight.detach(), lin_w - 0.01 * gw) and assert_close(net[2].bias.detach(), lin_b - 0.01 * gb)
    assert_close(net[0].bias.detach(), bias - 0.01 * gbias)
    assert max(net[0].rank) <= 3 and max(net[0].rank) > 2                          # grew, but not past the cap
    assert _orthonormal(net[0]) and not net[0].full_weight().isnan().any()


@pytest.mark.gpu
@CUDA
def test_geometry_aware_and_stable_cp_on_cuda():
    net = nn.Sequential(TuckerLinear(16, 16, 2, dtype=torch.float64, device="cuda", seed=0))
    x = torch.randn(8, 16, dtype=torch.float64, device="cuda")
    opt = GeometryAwareTucker(net, 0.1, tau=0.05)
    opt.step(lambda: net(x).pow(2).mean())
    assert net[0].core.device.type == "cuda" and all(U.device.type == "cuda" for U in net[0].in_factors)
    cp, rec = stable_cp_als(torch.randn(5, 4, 3, 3, dtype=torch.float64, device="cuda"), 3, penalty=1e-3)
    assert cp.weights.device.type == "cuda" and rec.n_iter >= 1


def test_tt_linear_forced_plans_agree_in_value_and_gradient():
    x = _x((32, 1024), torch.float64, "cpu")
    ref = None
    for plan in ("sweep", "einsum", "dense", "model", "measure"):
        layer = TTLinear(1024, 1024, 4, in_modes=(8, 8, 16), out_modes=(8, 8, 16), dtype=torch.float64, seed=0, plan=plan)
        y = layer(x)
        grads = torch.autograd.grad(y.square().sum(), list(layer.cores))
        if ref is None: ref = (y.detach(), grads)
        assert_close(y, ref[0], rtol=1e-10, atol=1e-12)
        for g, g0 in zip(grads, ref[1]): assert_close(g, g0, rtol=1e-9, atol=1e-10)
    assert TTLinear(24, 12, 2, plan="sweep")._plan(64) is None
    assert TTLinear(24, 12, 2, plan="dense")._plan(1) == "dense"


def test_tt_linear_measured_plan_takes_the_fastest_candidate(monkeypatch):
    "With one candidate made artificially slow or fast, the measurement must follow; no parameter gradient is left behind."
    import time as _time
    for fast in ("sweep", "dense"):
        layer = TTLinear(1024, 1024, 4, in_modes=(8, 8, 16), out_modes=(8, 8, 16), seed=0, plan="measure")
        apply = layer._apply_plan
        def slowed(plan, x, fast=fast, apply=apply):
            if ("sweep" if plan is None else "dense" if plan == "dense" else "einsum") != fast: _time.sleep(0.02)
            return apply(plan, x)
        monkeypatch.setattr(layer, "_apply_plan", slowed)
        x = _x((64, 1024), torch.float32, "cpu")
        layer(x)
        assert layer._plans[(64, True)] == (None if fast == "sweep" else "dense")
        assert all(G.grad is None for G in layer.cores)
        with torch.no_grad(): layer(x)
        assert (64, False) in layer._plans                                # measured again, forward only


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("modes,rank", [((8, 8, 8), 32), ((8, 8, 8, 8), 16)])
def test_tt_sweep_runs_thin_slabs_as_one_gemm_without_per_slab_copies_of_a_core(modes, rank, device):
    "At batch 1 neither pass writes anything near P core-sized products (the batched GEMM's gradient did); values and gradients match the rebuild on both sides of each step's switch."
    n = math.prod(modes)
    sweep, dense = (TTLinear(n, n, rank, in_modes=modes, out_modes=modes, dtype=torch.float64, device=device, seed=3, plan=plan)
                    for plan in ("sweep", "dense"))
    r, d = sweep.rank, len(modes)
    per_slab = max(math.prod(modes[:k]) * r[k] * modes[k] * modes[k] * r[k + 1] for k in range(1, d))
    x = torch.randn(1, n, dtype=torch.float64, device=device, requires_grad=True)
    with LargestResult() as seen:
        torch.autograd.grad(sweep(x).sum(), [x, *sweep.cores])
    assert seen.largest <= per_slab // 4, (seen.largest, per_slab)
    S = lambda k, B: B * math.prod(modes[k + 1:])
    thin = {B: [comp._slabs_are_thin(r[k] * modes[k], modes[k] * r[k + 1], S(k, B)) for k in range(1, d)] for B in (1, 7, 8, 15, 16, 64)}
    assert thin[1][-1] and thin[7][-1] and not any(thin[64])     # the last step is thin at batches 1 and 7, none at 64
    for B in thin:
        xb = _x((B, n), torch.float64, device, seed=B)
        ys = [layer(xb) for layer in (sweep, dense)]
        assert_close(ys[0], ys[1], rtol=1e-10, atol=1e-12)
        gs = [torch.autograd.grad(y.square().sum(), list(layer.cores)) for y, layer in zip(ys, (sweep, dense))]
        for g, g0 in zip(*gs): assert_close(g, g0, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("in_modes,out_modes,B,rows", [((8, 8, 8), (8, 8, 8), 1030, 64), ((16, 8, 4), (4, 8, 16), 4100, 256)])
def test_tt_sweep_runs_large_cpu_batches_in_blocks_of_rows(in_modes, out_modes, B, rows, device):
    "On the CPU a batch whose sweep would hold 64 MiB runs in blocks (the reversed sweep too); same values and gradients as the rebuild."
    sweep, dense = (TTLinear(512, 512, 16, in_modes=in_modes, out_modes=out_modes, dtype=torch.float64, device=device,
                             seed=5, plan=plan) for plan in ("sweep", "dense"))
    whole = B * comp._sweep_row_entries(*sweep._sweep_modes())
    assert whole * 8 >= 64 << 20 and sweep._reverse == (in_modes != out_modes)
    assert sweep._sweep_rows(B) == (rows if device == "cpu" else B) and sweep._sweep_rows(B - 100) == B - 100
    x = _x((B, 512), torch.float64, device, seed=1).requires_grad_()
    with torch.no_grad(), LargestResult() as seen:
        y = sweep(x)
    if device == "cpu": assert seen.largest <= max(B * 512, rows * whole // B) and seen.largest < whole // 2, (seen.largest, whole)
    assert_close(y, dense(x), rtol=1e-10, atol=1e-12)
    gs = [torch.autograd.grad(layer(x).square().sum(), [x, *layer.cores]) for layer in (sweep, dense)]
    for g, g0 in zip(*gs): assert_close(g, g0, rtol=1e-9, atol=1e-10)


_NO_GRAD_LAYERS = {
    "cp": (lambda **kw: CPLinear(64, 2048, 8, **kw), 256),
    "tucker": (lambda **kw: TuckerLinear(64, 2048, 4, **kw), 256),
    "tt-rebuild": (lambda **kw: TTLinear(64, 2048, 4, plan="dense", **kw), 256),
    # not reversed: a reversed sweep permutes its output, one copy more; the steps hold at most a quarter of the output
    "tt-sweep": (lambda **kw: TTLinear(64, 2048, 2, in_modes=(8, 8), out_modes=(64, 32), plan="sweep", **kw), 256),
    "tt-blocks": (lambda **kw: TTLinear(512, 512, 16, in_modes=(8, 8, 8), out_modes=(8, 8, 8), plan="sweep", **kw), 4100),
    "tproduct": (lambda **kw: TProductLinear(4, 64, 32, 2, **kw), 256),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", sorted(_NO_GRAD_LAYERS))
def test_forward_without_autograd_holds_the_output_once(kind, device):
    "Under no_grad a layer creates one output-sized tensor (bias added in place, CPU sweep blocks written into one output); the values are those of the recorded pass, which keeps its own copy."
    make, B = _NO_GRAD_LAYERS[kind]
    layer = make(dtype=torch.float64, device=device, seed=2)
    x = _x((B, layer.in_features), torch.float64, device, seed=4).requires_grad_()
    x0 = x.detach().clone()
    with torch.no_grad(), LargestResult() as seen:
        y = layer(x)
    if not (kind == "tt-blocks" and device != "cpu"):             # on CUDA the sweep runs whole: its steps are larger
        assert sum(s >= y.numel() for s in seen.sizes) == 1, sorted(seen.sizes)[-3:]
    assert torch.equal(x.detach(), x0)
    yg = layer(x)
    assert yg.grad_fn is not None and yg.data_ptr() != y.data_ptr()
    assert_close(y, yg, rtol=1e-12, atol=1e-12)
    assert_close(y, x0 @ layer.full_weight().T + layer.bias, rtol=1e-10, atol=1e-12)
    with torch.no_grad(): assert_close(layer(x0.reshape(4, B // 4, -1)), y.reshape(4, B // 4, -1), rtol=1e-12, atol=1e-12)


def test_bias_of_a_frozen_layer_stays_differentiable_where_it_is_trained():
    "Frozen cores with a trainable bias: the sum is recorded (not in place) and the bias gets its gradient."
    layer = TTLinear(64, 256, 4, dtype=torch.float64, seed=0)
    for G in layer.cores: G.requires_grad_(False)
    x = _x((8, 64), torch.float64, "cpu")
    y = layer(x)
    (g,) = torch.autograd.grad(y.sum(), [layer.bias])
    assert_close(g, torch.full((256,), 8.0, dtype=torch.float64))
    layer.bias.requires_grad_(False)
    assert not layer(x).requires_grad


def test_no_grad_bias_never_writes_into_the_input():
    "A subclass whose `_matvec` returns a view of its input (here the identity): the bias is added out of place."
    class Identity(FactorizedLinear):
        def _matvec(self, x): return x
    layer = Identity(6, 6, (2, 3), None, generator=torch.Generator().manual_seed(0))
    x = _x((4, 6), torch.float32, "cpu")
    x0 = x.clone()
    with torch.no_grad(): y = layer(x)
    assert torch.equal(x, x0) and torch.equal(y, x0 + layer.bias)


def test_layer_under_vmap_over_its_bias_without_autograd():
    "A batched bias under torch.func.vmap: the unbatched output cannot take the sum in place, so it is added out of place."
    layer = CPLinear(12, 6, 3, dtype=torch.float64, seed=0)
    x = _x((5, 12), torch.float64, "cpu")
    biases = _x((3, 6), torch.float64, "cpu", seed=1)
    params = {k: v.detach() for k, v in layer.named_parameters()}
    with torch.no_grad():
        ys = torch.func.vmap(lambda b: torch.func.functional_call(layer, {**params, "bias": b}, (x,)))(biases)
        base = x @ layer.full_weight().T
    assert_close(ys, base + biases[:, None, :], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("in_modes,out_modes,rank", [((2, 3, 4), (5, 3, 2), (1, 2, 3, 1)), ((4, 6), (3, 5), (1, 4, 1)),
                                                     ((2, 2, 3, 2), (3, 2, 2, 1), (1, 2, 3, 2, 1))])
def test_tt_linear_rebuilt_weight_matches_the_format_on_uneven_modes(in_modes, out_modes, rank):
    kw = dict(in_modes=in_modes, out_modes=out_modes, dtype=torch.float64, seed=1)
    n, m = math.prod(in_modes), math.prod(out_modes)
    dense, sweep = TTLinear(n, m, rank, plan="dense", **kw), TTLinear(n, m, rank, plan="sweep", **kw)
    x = _x((9, n), torch.float64, "cpu")
    assert_close(dense(x), sweep(x), rtol=1e-10, atol=1e-12)
    assert_close(dense(x), x @ dense.full_weight().T + dense.bias, rtol=1e-10, atol=1e-12)
