"""Bad input to tensornn.compression gets a ValueError/TypeError whose message names the argument.

One row per (public name, bad input); `test_every_public_name_has_a_row` keeps the table complete.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from tensornn.formats import CPTensor
import torch.nn as nn

from tensornn import compression as C

NAN = float("nan")
LIN = lambda: nn.Linear(24, 12)                              # noqa: E731
CONV = lambda: nn.Conv2d(3, 4, 3)                            # noqa: E731
NET = lambda: nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))   # noqa: E731
F2 = lambda *s: torch.randn(*s, dtype=torch.float64)          # noqa: E731

ROWS = [  # (public name, call, exception, regex on the message)
    ("factorize", lambda: C.factorize(0, 2), ValueError, r"^n\b"),
    ("factorize", lambda: C.factorize(12, 2.0), TypeError, r"^d\b"),
    ("factorize", lambda: C.factorize(True, 2), TypeError, r"^n\b"),
    ("FactorizedLinear", lambda: C.FactorizedLinear(0, 4, None, None), ValueError, r"^in_features\b"),
    ("FactorizedLinear", lambda: C.FactorizedLinear(6, 4, (2, 2), None), ValueError, r"^in_modes\b"),
    ("FactorizedLinear", lambda: C.FactorizedLinear(6, 4, None, None, bias="yes"), TypeError, r"^bias\b"),
    ("CPLinear", lambda: C.CPLinear(24, 12, 0), ValueError, r"^rank\b"),
    ("CPLinear", lambda: C.CPLinear(24, 12, 2.5), TypeError, r"^rank\b"),
    ("CPLinear", lambda: C.CPLinear(24, 12, 2, n_modes=0), ValueError, r"^n_modes\b"),
    ("CPLinear", lambda: C.CPLinear(24, 12, 2, in_modes=24), TypeError, r"^in_modes\b"),
    ("CPLinear", lambda: C.CPLinear(24, 12, 2, in_modes=()), ValueError, r"^in_modes\b"),
    ("CPLinear", lambda: C.CPLinear(24, 12, 2, dtype="float33"), TypeError, r"^dtype\b"),
    ("CPLinear", lambda: C.CPLinear(24, 12, 2, dtype=3), TypeError, r"^dtype\b"),
    ("CPLinear", lambda: C.CPLinear(24, 12, 2, device="nowhere"), ValueError, r"^device\b"),
    ("CPLinear", lambda: C.CPLinear(24, 12, 2, seed="a"), TypeError, r"^seed\b"),
    ("CPLinear", lambda: C.CPLinear(24, 12, 2, generator=0), TypeError, r"^generator\b"),
    ("CPLinear", lambda: C.CPLinear(24, 12, 2)(torch.randn(3, 23)), ValueError, r"^x\b"),
    ("CPLinear", lambda: C.CPLinear(24, 12, 2)([1.0] * 24), ValueError, r"^x\b"),
    ("CPLinear", lambda: C.CPLinear(24, 12, 2)(torch.randn(2, 24, dtype=torch.float64)), TypeError, r"^x: expected dtype"),
    ("CPLinear", lambda: C.CPLinear.from_dense(CONV(), 2), TypeError, r"^layer\b"),
    ("CPLinear", lambda: C.CPLinear.from_dense(LIN(), 0), ValueError, r"^rank\b"),
    ("CPLinear", lambda: C.CPLinear.from_dense(LIN(), 3, n_iter=0), ValueError, r"^n_iter\b"),
    ("TuckerLinear", lambda: C.TuckerLinear(24, 12, (2, 2, 2)), ValueError, r"^rank\b"),
    ("TuckerLinear", lambda: C.TuckerLinear(24, 12, (2, 5, 2, 2), out_modes=(3, 4), in_modes=(4, 6)), ValueError, r"^rank\[1\]"),
    ("TuckerLinear", lambda: C.TuckerLinear(24, 12, "2"), TypeError, r"^rank\b"),
    ("TuckerLinear", lambda: C.TuckerLinear(24, 12, 2, out_modes=(5, 5)), ValueError, r"^out_modes\b"),
    ("TuckerLinear", lambda: C.TuckerLinear.from_dense(LIN(), 2, method="svd"), ValueError, r"^method\b"),
    ("TuckerLinear", lambda: C.TuckerLinear.from_dense(LIN(), 2, method="hooi", n_iter=-1), ValueError, r"^n_iter\b"),
    ("TuckerLinear", lambda: C.TuckerLinear.from_dense(CONV(), 2), TypeError, r"^layer\b"),
    ("TTLinear", lambda: C.TTLinear(24, 12, (1, 100, 1)), ValueError, r"^rank\[0\]"),
    ("TTLinear", lambda: C.TTLinear(24, 12, (2, 2, 2)), ValueError, r"^rank\b"),
    ("TTLinear", lambda: C.TTLinear(24, 12, (2, 2, 2, 2)), ValueError, r"^rank\b"),
    ("TTLinear", lambda: C.TTLinear(24, 12, 2, in_modes=(4, 6), out_modes=(2, 2, 3)), ValueError, r"^out_modes\b"),
    ("TTLinear", lambda: C.TTLinear(24, 12, 2, dtype="float33"), TypeError, r"^dtype\b"),
    ("TTLinear", lambda: C.TTLinear(24, 12, 2)(torch.randn(3, 24, dtype=torch.float64)), TypeError, r"^x: expected dtype"),
    ("TTLinear", lambda: C.TTLinear.from_dense(LIN(), 0), ValueError, r"^rank\b"),
    ("TTLinear", lambda: C.TTLinear.from_dense(LIN(), n_modes=0), ValueError, r"^n_modes\b"),
    ("FactorizedConv2d", lambda: C.FactorizedConv2d(3, 4, 0), ValueError, r"^kernel_size\b"),
    ("FactorizedConv2d", lambda: C.FactorizedConv2d(3, 4, 3, stride=0), ValueError, r"^stride\b"),
    ("FactorizedConv2d", lambda: C.FactorizedConv2d(3, 4, 3, padding=-1), ValueError, r"^padding\b"),
    ("FactorizedConv2d", lambda: C.FactorizedConv2d(3, 4, 3, padding="full"), ValueError, r"^padding\b"),
    ("FactorizedConv2d", lambda: C.FactorizedConv2d(3, 4, 2, padding="same"), ValueError, r"^padding\b"),
    ("FactorizedConv2d", lambda: C.FactorizedConv2d(3, 4, 3, dilation=1.5), TypeError, r"^dilation\b"),
    ("FactorizedConv2d", lambda: C.FactorizedConv2d(0, 4, 3), ValueError, r"^in_channels\b"),
    ("CPConv2d", lambda: C.CPConv2d(3, 4, 3, 0), ValueError, r"^rank\b"),
    ("CPConv2d", lambda: C.CPConv2d(3, 4, 3, 2)(torch.randn(1, 2, 5, 5)), ValueError, r"^x\b"),
    ("CPConv2d", lambda: C.CPConv2d(3, 4, 3, 2)(torch.randn(1, 3, 2, 5)), ValueError, r"^x: spatial size"),
    ("CPConv2d", lambda: C.CPConv2d(3, 4, 3, 2)(torch.randn(5, 5)), ValueError, r"^x\b"),
    ("CPConv2d", lambda: C.CPConv2d(3, 4, 3, 2).flops, ValueError, r"^flops\b"),
    ("CPConv2d", lambda: C.CPConv2d(3, 4, 3, 2, dtype="half-float"), TypeError, r"^dtype\b"),
    ("CPConv2d", lambda: C.CPConv2d.from_dense(LIN(), 2), TypeError, r"^layer\b"),
    ("CPConv2d", lambda: C.CPConv2d.from_dense(nn.Conv2d(3, 4, 3, padding_mode="reflect", padding=1), 2), ValueError, r"^layer.padding_mode"),
    ("TuckerConv2d", lambda: C.TuckerConv2d(4, 4, 3, (5, 2)), ValueError, r"^rank\[0\]"),
    ("TuckerConv2d", lambda: C.TuckerConv2d(3, 4, 3, 2)(torch.randn(1, 3, 5, 5, dtype=torch.float64)), TypeError, r"^x: expected dtype"),
    ("TuckerConv2d", lambda: C.TuckerConv2d.from_dense(nn.Conv2d(4, 4, 3, groups=2), 2), ValueError, r"^layer.groups"),
    ("TuckerConv2d", lambda: C.TuckerConv2d.from_dense(CONV(), 2, method="tucker"), ValueError, r"^method\b"),
    ("TTConv2d", lambda: C.TTConv2d(3, 4, 3, 2, n_modes=0), ValueError, r"^n_modes\b"),
    ("TTConv2d", lambda: C.TTConv2d(3, 4, 3, (1, 2, 2)), ValueError, r"^rank\b"),
    ("TTConv2d", lambda: C.TTConv2d.from_dense(CONV(), 0), ValueError, r"^rank\b"),
    ("TTConv2d", lambda: C.TTConv2d.from_dense(LIN()), TypeError, r"^layer\b"),
    ("compress_model", lambda: C.compress_model([LIN()], "tt", 2), TypeError, r"^model\b"),
    ("compress_model", lambda: C.compress_model(NET(), "svd", 2), ValueError, r"^format\b"),
    ("compress_model", lambda: C.compress_model(NET(), "tt", 0), ValueError, r"^rank\b"),
    ("compress_model", lambda: C.compress_model(NET(), "tt", 2, pattern="["), ValueError, r"^pattern\b"),
    ("compress_model", lambda: C.compress_model(NET(), "tt", 2, pattern="nothing"), ValueError, r"^pattern\b"),
    ("compress_model", lambda: C.compress_model(NET(), "cp", 2, n_modes=0), ValueError, r"^n_modes\b"),
    ("count_parameters", lambda: C.count_parameters("model"), TypeError, r"^model\b"),
    ("LoRALinear", lambda: C.LoRALinear(LIN(), 13), ValueError, r"^rank\b"),
    ("LoRALinear", lambda: C.LoRALinear(CONV(), 2), TypeError, r"^base\b"),
    ("LoRALinear", lambda: C.LoRALinear(LIN(), 2, alpha=0), ValueError, r"^alpha\b"),
    ("LoRALinear", lambda: C.LoRALinear(LIN(), 2, alpha="1"), TypeError, r"^alpha\b"),
    ("LoRALinear", lambda: C.LoRALinear(LIN(), 2, seed=-1), ValueError, r"^seed\b"),
    ("TensorAdapterLinear", lambda: C.TensorAdapterLinear(LIN(), 2, format="ht"), ValueError, r"^format\b"),
    ("TensorAdapterLinear", lambda: C.TensorAdapterLinear(LIN(), 2, alpha=NAN), ValueError, r"^alpha\b"),
    ("TensorAdapterLinear", lambda: C.TensorAdapterLinear(LIN(), 0), ValueError, r"^rank\b"),
    ("TensorAdapterLinear", lambda: C.TensorAdapterLinear(CONV(), 2), TypeError, r"^base\b"),
    ("add_adapters", lambda: C.add_adapters(NET(), format="dora"), ValueError, r"^format\b"),
    ("add_adapters", lambda: C.add_adapters(NET(), 3), TypeError, r"^pattern\b"),
    ("add_adapters", lambda: C.add_adapters(NET(), "("), ValueError, r"^pattern\b"),
    ("add_adapters", lambda: C.add_adapters(NET(), "nothing"), ValueError, r"^pattern\b"),
    ("add_adapters", lambda: C.add_adapters([LIN()]), TypeError, r"^model\b"),
    ("add_adapters", lambda: C.add_adapters(NET(), rank=0), ValueError, r"^rank\b"),
    ("merge_adapters", lambda: C.merge_adapters(None), TypeError, r"^model\b"),
    ("complexity_terms", lambda: C.complexity_terms(NET(), 0), ValueError, r"^n_samples\b"),
    ("complexity_terms", lambda: C.complexity_terms(NET(), 10.0), TypeError, r"^n_samples\b"),
    ("complexity_terms", lambda: C.complexity_terms(nn.ReLU(), 10), ValueError, r"^model\b"),
    ("complexity_terms", lambda: C.complexity_terms([LIN()], 10), TypeError, r"^model\b"),
    ("ComplexityTerms", lambda: C.ComplexityTerms(1.0), TypeError, r"wang2024"),
    ("LayerTerm", lambda: C.LayerTerm("0", "linear"), TypeError, r"rank"),
    ("NeuralCollapse", lambda: C.NeuralCollapse(0.0), TypeError, r"nc2"),
    ("neural_collapse", lambda: C.neural_collapse(F2(6, 3), torch.arange(2).repeat(3), F2(1, 3)), ValueError, r"^weight\b"),
    ("neural_collapse", lambda: C.neural_collapse(F2(6, 3), torch.arange(2).repeat(3), F2(2, 4)), ValueError, r"^weight\b"),
    ("neural_collapse", lambda: C.neural_collapse(F2(6, 3), torch.arange(2).repeat(3)[:-1], F2(2, 3)), ValueError, r"^labels\b"),
    ("neural_collapse", lambda: C.neural_collapse(F2(6, 3), torch.arange(2).repeat(3).double(), F2(2, 3)), ValueError, r"^labels\b"),
    ("neural_collapse", lambda: C.neural_collapse(F2(6, 3), torch.zeros(6, dtype=torch.long), F2(2, 3)), ValueError, r"^labels\b"),
    ("neural_collapse", lambda: C.neural_collapse(F2(6), torch.arange(2).repeat(3), F2(2, 3)), ValueError, r"^features\b"),
    ("neural_collapse", lambda: C.neural_collapse(F2(6, 3), torch.arange(2).repeat(3), F2(2, 3), F2(3)), ValueError, r"^bias\b"),
    ("neural_collapse", lambda: C.neural_collapse(torch.full((6, 3), NAN), torch.arange(2).repeat(3), F2(2, 3)), ValueError, r"^features\b"),
    ("effective_rank", lambda: C.effective_rank(F2(5)), ValueError, r"^W\b"),
    ("effective_rank", lambda: C.effective_rank(np.array([["a"]])), TypeError, r"^W\b"),
    ("effective_rank", lambda: C.effective_rank(torch.tensor([[1.0, NAN]])), ValueError, r"^W\b"),
    ("TProductLinear", lambda: C.TProductLinear(3, 4, 5, 4), ValueError, r"^rank\b"),
    ("TProductLinear", lambda: C.TProductLinear(3, 4, 0, 2), ValueError, r"^tube\b"),
    ("TProductLinear", lambda: C.TProductLinear(3.0, 4, 5, 2), TypeError, r"^in_channels\b"),
    ("TProductLinear", lambda: C.TProductLinear(3, 4, 5, 2)(torch.zeros(2, 14)), ValueError, r"^x\b"),
    ("TProductLinear", lambda: C.TProductLinear(3, 4, 5, 2).tubal_rank(rtol="a"), TypeError, r"^rtol\b"),
    ("TProductLinear", lambda: C.TProductLinear.from_dense(nn.Linear(12, 8), 3, 2), ValueError, r"^tube\b"),
    ("TProductLinear", lambda: C.TProductLinear.from_dense(nn.Conv2d(1, 1, 1), 1, 1), TypeError, r"^layer\b"),
    ("cp_sensitivity", lambda: C.cp_sensitivity(torch.zeros(3, 3)), TypeError, r"^x\b"),
    ("cp_sensitivity", lambda: C.cp_sensitivity(CPTensor(torch.zeros(2), [torch.ones(3, 2)] * 3)), ValueError, r"^x\b"),
    ("cp_sensitivity_penalty", lambda: C.cp_sensitivity_penalty("net"), TypeError, r"^model\b"),
    ("quantize_weights", lambda: C.quantize_weights(nn.Linear(3, 2), 1), ValueError, r"^bits\b"),
    ("quantize_weights", lambda: C.quantize_weights(nn.Linear(3, 2), 17), ValueError, r"^bits\b"),
    ("quantize_weights", lambda: C.quantize_weights(nn.Linear(3, 2), 8, granularity="row"), ValueError, r"^granularity\b"),
    ("quantize_weights", lambda: C.quantize_weights("net", 8), TypeError, r"^model\b"),
    ("prune_weights", lambda: C.prune_weights(nn.Linear(3, 2), 1.0), ValueError, r"^sparsity\b"),
    ("prune_weights", lambda: C.prune_weights(nn.Linear(3, 2), "half"), TypeError, r"^sparsity\b"),
    ("parameter_bytes", lambda: C.parameter_bytes(nn.Linear(3, 2), 1), ValueError, r"^bits\b"),
    ("parameter_bytes", lambda: C.parameter_bytes(nn.Linear(3, 2), 8, granularity="x"), ValueError, r"^granularity\b"),
]


@pytest.mark.parametrize("name,call,exc,match", ROWS, ids=[f"{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_bad_input_names_the_argument(name, call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_every_public_name_has_a_row():
    assert sorted(set(C.__all__) - {r[0] for r in ROWS}) == []
