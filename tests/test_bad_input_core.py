"""One bad input for EVERY public function of the core modules (validation, kernels, formats, decompositions,
theory): each gets a ValueError/TypeError whose message starts with the name of the offending argument.

`test_table_covers_every_public_name` keeps the table complete: a new public function without a row fails it.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tensornn import decompositions as D
from tensornn import formats as Fmt
from tensornn import kernels as K
from tensornn import theory as Th
from tensornn import validation as V

pytestmark = [pytest.mark.usefixtures("single_thread")]

F64 = dict(dtype=torch.float64)
T3 = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0), **F64)
CP = Fmt.random_cp((3, 4, 5), 2, seed=0, **F64)
TK = Fmt.random_tucker((3, 4, 5), 2, seed=0, **F64)
TT = Fmt.random_tt((3, 4, 5), 2, seed=0, **F64)
HT = Fmt.random_ht((3, 4, 5), 2, seed=0, **F64)
TR = Fmt.random_tr((3, 4, 5), 2, seed=0, **F64)
SYM = K.cp_full(torch.ones(2, **F64), [torch.linalg.qr(torch.randn(4, 2, **F64)).Q] * 3)
M = torch.randn(3, 4, **F64)
HALF = T3.half()
IDX_OUT = torch.tensor([[3, 0, 0]])

# (function name, call, exception, argument the message must start with)
ROWS = [
    # ---------------------------------------------------------------- validation
    ("check_tensor", lambda: V.check_tensor([1.0], "T"), TypeError, "T"),
    ("as_tensor", lambda: V.as_tensor(np.ones(3, dtype=np.complex64), "x"), TypeError, "x"),
    ("check_real", lambda: V.check_real(torch.ones(2, dtype=torch.complex64), "x"), TypeError, "x"),
    ("check_linalg_dtype", lambda: V.check_linalg_dtype(HALF, "T"), TypeError, "T"),
    ("check_same_device_dtype", lambda: V.check_same_device_dtype(a=M, b=M.float()), TypeError, "b"),
    ("check_int", lambda: V.check_int(2.5, "n"), TypeError, "n"),
    ("check_rank", lambda: V.check_rank(0), ValueError, "rank"),
    ("check_multilinear_rank", lambda: V.check_multilinear_rank((3, 1, 1), (3, 4, 5)), ValueError, "rank\\[0\\]"),
    ("check_shape", lambda: V.check_shape("ab"), TypeError, "shape"),
    ("check_tol", lambda: V.check_tol(-1.0), ValueError, "tol"),
    ("check_choice", lambda: V.check_choice("x", {"a": 1}, "init"), ValueError, "init"),
    ("check_dtype", lambda: V.check_dtype("floaty"), TypeError, "dtype"),
    ("check_index", lambda: V.check_index(torch.tensor([[0, 1]]), (2, 2, 2)), ValueError, "index"),
    ("renamed_argument", lambda: V.renamed_argument(2, 3, "rank", "max_rank", "tt_svd"), TypeError, "tt_svd"),
    ("is_tracing", lambda: V.is_tracing([1.0, 2.0]), TypeError, "x"),
    ("check_sequence", lambda: V.check_sequence(M, "factors", "matrices"), TypeError, "factors"),
    ("check_sequence", lambda: V.check_sequence((), "factors", "matrices"), ValueError, "factors"),
    # ---------------------------------------------------------------- kernels
    ("make_generator", lambda: K.make_generator(generator=3), TypeError, "generator"),
    ("random_normal", lambda: K.random_normal((2, 2), generator="g"), TypeError, "generator"),
    ("unfold", lambda: K.unfold(T3, 3), ValueError, "mode"),
    ("fold", lambda: K.fold(M, 0, (3, 5)), ValueError, "M"),
    ("gemm", lambda: K.gemm(M, M), ValueError, "B"),
    ("gemm", lambda: K.gemm(M, M.float().mT), TypeError, "B"),
    ("gemm", lambda: K.gemm(T3, M), ValueError, "A"),
    ("mode_dot", lambda: K.mode_dot(T3, M, 0), ValueError, "M"),
    ("multi_mode_dot", lambda: K.multi_mode_dot(T3, [M], modes=[0, 1]), ValueError, "modes"),
    ("khatri_rao", lambda: K.khatri_rao([M, torch.randn(4, 5, **F64)]), ValueError, r"matrices\[1\]"),
    ("mttkrp", lambda: K.mttkrp(T3, CP.factors[:2], 0), ValueError, "factors"),
    ("cp_residual_norm", lambda: K.cp_residual_norm(T3, CP.factors[:2]), ValueError, "factors"),
    ("check_cp", lambda: K.check_cp(torch.ones(3, **F64), CP.factors), ValueError, r"factors\[0\]"),
    ("cp_full", lambda: K.cp_full(CP.weights, []), ValueError, "factors"),
    ("cp_inner", lambda: K.cp_inner(CP.weights, CP.factors, CP.weights, CP.factors[:2]), ValueError, "factors_b"),
    ("cp_entries", lambda: K.cp_entries(CP.weights, CP.factors, IDX_OUT), ValueError, "index"),
    ("check_tucker", lambda: K.check_tucker(TK.core, TK.factors[:2]), ValueError, "factors"),
    ("check_tt_cores", lambda: K.check_tt_cores(TT.cores[:2]), ValueError, "cores"),
    ("check_tt_cores", lambda: K.check_tt_cores(TT.cores[0]), TypeError, "cores"),
    ("check_tt_cores", lambda: K.check_tt_cores([TT.cores[0], TT.cores[1].float(), TT.cores[2]]), TypeError, "cores"),
    ("check_ht", lambda: K.check_ht(HT.leaves, {}), ValueError, "transfers"),
    ("check_ht", lambda: K.check_ht(HT.leaves, list(HT.transfers.values())), TypeError, "transfers"),
    ("tt_orthogonalize_right", lambda: Fmt.tt_orthogonalize_right(TT.cores[1:]), ValueError, "cores"),
    ("tt_orthogonalize_right", lambda: Fmt.tt_orthogonalize_right(TT), TypeError, "cores"),
    ("tucker_full", lambda: K.tucker_full(TK.core, [TK.factors[0].mT, *TK.factors[1:]]), ValueError, r"factors\[0\]"),
    ("tt_full", lambda: K.tt_full([TT.cores[1]]), ValueError, "cores"),
    ("tt_inner", lambda: K.tt_inner(TT.cores, TT.cores[:2]), ValueError, "cores_b"),
    ("tt_entries", lambda: K.tt_entries(TT.cores, IDX_OUT), ValueError, "index"),
    ("tt_contract_vectors", lambda: K.tt_contract_vectors(TT.cores, [torch.ones(2, 3, **F64)]), ValueError, "vectors"),
    ("ht_tree", lambda: K.ht_tree(0), ValueError, "d"),
    ("ht_full", lambda: K.ht_full(HT.leaves, {}), ValueError, "transfers"),
    ("ht_inner", lambda: K.ht_inner(HT.leaves, HT.transfers, HT.leaves[:2], HT.transfers), ValueError, r"b\.transfers"),
    ("ht_contract_vectors", lambda: K.ht_contract_vectors(HT.leaves, HT.transfers, torch.ones(3)), TypeError, "vectors"),
    ("numerical_rank", lambda: K.numerical_rank(torch.ones(3, **F64)), ValueError, "M"),
    # ---------------------------------------------------------------- formats (classes, methods, functions)
    ("CPTensor", lambda: Fmt.CPTensor(None, M), TypeError, "factors"),
    ("TuckerTensor", lambda: Fmt.TuckerTensor(TK.core, TK.factors[0]), TypeError, "factors"),
    ("TTTensor", lambda: Fmt.TTTensor([TT.cores[0], TT.cores[0]]), ValueError, r"cores\[1\]"),
    ("HTTensor", lambda: Fmt.HTTensor(HT.leaves, [1]), TypeError, "transfers"),
    ("TRTensor", lambda: Fmt.TRTensor([TR.cores[0], TR.cores[1][:, :, :1]]), ValueError, "cores: expected the ring to close"),
    ("tr_full", lambda: Fmt.tr_full([TR.cores[0], TR.cores[0][:1]]), ValueError, r"cores\[1\]"),
    ("CPTensor.entries", lambda: CP.entries(IDX_OUT), ValueError, "index"),
    ("TuckerTensor.entries", lambda: TK.entries(IDX_OUT), ValueError, "index"),
    ("TTTensor.entries", lambda: TT.entries(IDX_OUT.float()), TypeError, "index"),
    ("HTTensor.entries", lambda: HT.entries(IDX_OUT), ValueError, "index"),
    ("TRTensor.entries", lambda: TR.entries(IDX_OUT), ValueError, "index"),
    ("_Format.inner", lambda: CP.inner(torch.ones(2, 2, **F64)), ValueError, "b"),
    ("inner", lambda: Fmt.inner(CP, TT.to(torch.float32)), TypeError, "b"),
    ("norm", lambda: Fmt.norm([1.0, 2.0]), TypeError, "a"),
    ("random_cp", lambda: Fmt.random_cp((3, 4), 0), ValueError, "rank"),
    ("random_tucker", lambda: Fmt.random_tucker((3, 4), (2, 2, 2)), ValueError, "rank"),
    ("random_tt", lambda: Fmt.random_tt((3, 4, 5), (2, 3, 4)), ValueError, "rank"),
    ("random_ht", lambda: Fmt.random_ht((3, 0), 2), ValueError, r"shape\[1\]"),
    ("random_tr", lambda: Fmt.random_tr((3, 4, 5), (2, 3)), ValueError, "rank"),
    ("from_tensorly", lambda: Fmt.from_tensorly(CP), TypeError, "x"),
    ("HTTensor.to_tensorly", lambda: HT.to_tensorly(), TypeError, "HTTensor"),
    # ---------------------------------------------------------------- decompositions
    ("cp_als", lambda: D.cp_als(T3, 2, residual="exactly"), ValueError, "residual"),
    ("cp_als_batched", lambda: D.cp_als_batched(torch.zeros(3, 4, dtype=torch.float64), 2), ValueError, "T"),
    ("cp_als_batched", lambda: D.cp_als_batched(torch.zeros(2, 3, 4, 5, dtype=torch.float64), 0), ValueError, "rank"),
    ("cp_als_batched", lambda: D.cp_als_batched(torch.zeros(2, 3, 4, 5, dtype=torch.float64), 2, init="hosvd"), ValueError, "init"),
    ("cp_als_batched", lambda: D.cp_als_batched(torch.zeros(2, 3, 4, 5, dtype=torch.float64), 2, init=None), TypeError, "init"),
    ("cp_als_batched", lambda: D.cp_als_batched(torch.full((2, 3, 4), float("nan")), 2), ValueError, "T"),
    ("hosvd_batched", lambda: D.hosvd_batched(T3[0, 0], 1), ValueError, "T"),
    ("hosvd_batched", lambda: D.hosvd_batched(T3, None), TypeError, "rank"),
    ("hosvd_batched", lambda: D.hosvd_batched(T3, (2, 9)), ValueError, "rank"),
    ("hosvd_batched", lambda: D.hosvd_batched(torch.full((2, 3, 4), float("nan")), 2), ValueError, "T"),
    ("hosvd_batched", lambda: D.hosvd_batched(HALF, 2), TypeError, "T"),
    ("tt_svd_batched", lambda: D.tt_svd_batched(T3, rank=0), ValueError, "rank"),
    ("tt_svd_batched", lambda: D.tt_svd_batched(T3, rank=None), TypeError, "rank"),
    ("tt_svd_batched", lambda: D.tt_svd_batched(T3[0, 0], rank=2), ValueError, "T"),
    ("parafac", lambda: D.parafac(HALF, 2), TypeError, "T"),
    ("nn_cp", lambda: D.nn_cp(HALF, 2), TypeError, "T"),
    ("non_negative_parafac", lambda: D.non_negative_parafac(T3, 2, n_iter=0), ValueError, "n_iter"),
    ("hosvd", lambda: D.hosvd(T3, 4), ValueError, "rank"),
    ("hooi", lambda: D.hooi(T3, (3, 4, 13)), ValueError, r"rank\[2\]"),
    ("tucker", lambda: D.tucker(T3, None), TypeError, "rank"),
    ("tt_svd", lambda: D.tt_svd(T3, rank=(2, 2, 2)), ValueError, "rank"),
    ("tensor_train", lambda: D.tensor_train(T3, tol="a"), TypeError, "tol"),
    ("tt_round", lambda: D.tt_round(T3, rank=2), TypeError, "tt"),
    ("ht_svd", lambda: D.ht_svd(T3, rank=[2, 2]), TypeError, "rank"),
    ("tr_svd", lambda: D.tr_svd(T3, rank=0), ValueError, "rank"),
    ("tensor_ring", lambda: D.tensor_ring(T3.tolist()), TypeError, "T"),
    ("tr_als", lambda: D.tr_als(T3, (2, 2)), ValueError, "rank"),
    # ---------------------------------------------------------------- theory
    ("factor_match_score", lambda: Th.factor_match_score(CP, TK), TypeError, "b"),
    ("kruskal_rank", lambda: Th.kruskal_rank(M, rtol=True), TypeError, "rtol"),
    ("kruskal_uniqueness", lambda: Th.kruskal_uniqueness(M), TypeError, "cp"),
    ("jennrich", lambda: Th.jennrich(T3, 4), ValueError, "rank"),
    ("symmetric_cp_power", lambda: Th.symmetric_cp_power(SYM, 2, n_iter=0), ValueError, "n_iter"),
    ("symmetric_cp", lambda: Th.symmetric_cp(SYM, 2, method="als"), ValueError, "method"),
    ("expected_secant_dimension", lambda: Th.expected_secant_dimension((3,), 2), ValueError, "shape"),
    ("secant_dimension", lambda: Th.secant_dimension((3, 3, 3), 2, symmetric=1), TypeError, "symmetric"),
    ("generic_rank", lambda: Th.generic_rank((3, 4, 5), symmetric=True), ValueError, "shape"),
    ("multilinear_rank", lambda: Th.multilinear_rank(torch.ones(3, **F64)), ValueError, "T"),
    ("tt_rank", lambda: Th.tt_rank(T3, rtol=-1.0), ValueError, "rtol"),
    ("paratuck2", lambda: Th.paratuck2(M, M, M, M, M), ValueError, "H"),
    ("t_transpose", lambda: Th.t_transpose(M), ValueError, "A"),
    ("t_product", lambda: Th.t_product(T3, T3), ValueError, "B"),
    ("t_svd", lambda: Th.t_svd(HALF), TypeError, "A"),
    ("cp_identifiability", lambda: Th.cp_identifiability((3, 3, 3), 0), ValueError, "rank"),
    ("spiked_tensor", lambda: Th.spiked_tensor(0, 1.0), ValueError, "n"),
    ("spiked_tensor", lambda: Th.spiked_tensor(4, -0.5), ValueError, "strength"),
    ("spiked_tensor", lambda: Th.spiked_tensor(4, "big"), TypeError, "strength"),
    ("tensor_power_iteration", lambda: Th.tensor_power_iteration(torch.zeros(3, 3, 4, dtype=torch.float64)), ValueError, "T"),
    ("tensor_power_iteration", lambda: Th.tensor_power_iteration(torch.zeros(3, 3, 3, dtype=torch.float64), init="x"), ValueError, "init"),
    ("tensor_power_iteration", lambda: Th.tensor_power_iteration(torch.zeros(3, 3, 3, dtype=torch.float64), n_starts=0), ValueError, "n_starts"),
    ("hyperdeterminant_222", lambda: Th.hyperdeterminant_222(T3), ValueError, "T"),
    ("rank2_probability_222", lambda: Th.rank2_probability_222(100, level=1.0), ValueError, "level"),
    ("ll1_als", lambda: Th.ll1_als(T3, 2, 4), ValueError, "L"),
    # theory, issue 16 (helper ident): the certified existence radius
    ("cp_existence_radius", lambda: Th.cp_existence_radius([M, M, M, M]), ValueError, "cp"),
    ("cp_existence_radius", lambda: Th.cp_existence_radius(T3), TypeError, "cp"),
    ("cp_existence_radius", lambda: Th.cp_existence_radius(CP, n_pairs=0), ValueError, "n_pairs"),
]
#: public names with no input to get wrong, and why
EXEMPT = {"FitRecord": "a plain record of results (a dataclass the algorithms fill in)",
          "describe": "a formatter for error messages: it describes any value, so no input is bad",
          "Identifiability": "a plain report (a dataclass cp_identifiability fills in)",
          "ProportionEstimate": "a plain report (a dataclass rank2_probability_222 fills in)",
          "LL1Tensor": "a plain container of block-term factors (a dataclass ll1_als fills in)"}


@pytest.mark.parametrize("name,call,exc,arg", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_names_the_argument(name, call, exc, arg):
    with pytest.raises(exc, match=rf"^{arg}(?!\w)"):
        call()


def test_table_covers_every_public_name():
    covered = {r[0].split(".")[-1] if r[0].startswith("_Format") else r[0] for r in ROWS}
    for mod in (V, K, Fmt, D, Th):
        missing = [n for n in mod.__all__ if n not in covered and n not in EXEMPT]
        assert not missing, f"{mod.__name__}: no bad-input row for {missing}"


def test_format_methods_are_covered():
    "Every public method of every format has a row (methods shared through _Format count once)."
    covered = {r[0] for r in ROWS}
    for cls in (Fmt.CPTensor, Fmt.TuckerTensor, Fmt.TTTensor, Fmt.HTTensor, Fmt.TRTensor):
        assert f"{cls.__name__}.entries" in covered
    assert {"_Format.inner"} <= covered
