"""The key round trips on CUDA: outputs stay on the GPU, in the input dtype, and match the CPU results.

Every test skips without CUDA.
"""
from __future__ import annotations

import pytest
import torch

from conftest import DTYPES, TOL, rel_err
from tensornn import kernels as K
from tensornn import formats as Fmt
from tensornn import decompositions as D
from tensornn.testing import assert_close


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("single_thread")]
DEV = "cuda"
# GPU GEMMs may use TF32 for float32 unless disabled: tolerate that
GTOL = {torch.float32: dict(rtol=5e-3, atol=5e-4), torch.float64: TOL[torch.float64]}


def _cpu_gpu(*shape, gen, dtype):
    x = torch.randn(*shape, generator=gen, dtype=dtype)
    return x, x.to(DEV)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_unfold_fold_mode_dot_on_cuda(dtype, gen):
    T, Tg = _cpu_gpu(3, 4, 5, gen=gen, dtype=dtype)
    for mode in range(3):
        Mg = K.unfold(Tg, mode)
        assert Mg.device.type == "cuda" and Mg.dtype == dtype
        assert_close(K.fold(Mg, mode, Tg.shape), Tg, rtol=0, atol=0)
        A, Ag = _cpu_gpu(2, T.shape[mode], gen=gen, dtype=dtype)
        assert_close(K.mode_dot(Tg, Ag, mode).cpu(), K.mode_dot(T, A, mode), **GTOL[dtype])


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 4, 5), (6, 5, 2, 3), (13, 4, 12), (12, 2, 3, 13)])  # the last two: mode 0 by reduction
def test_khatri_rao_mttkrp_on_cuda(shape, dtype, gen):
    T, Tg = _cpu_gpu(*shape, gen=gen, dtype=dtype)
    F = [torch.randn(n, 3, generator=gen, dtype=dtype) for n in shape]
    Fg = [A.to(DEV) for A in F]
    assert_close(K.khatri_rao(Fg).cpu(), K.khatri_rao(F), **GTOL[dtype])
    for mode in range(len(shape)):
        out = K.mttkrp(Tg, Fg, mode)
        assert out.device.type == "cuda" and out.dtype == dtype
        assert_close(out.cpu(), K.unfold(T, mode) @ K.khatri_rao(F, skip=mode), **GTOL[dtype])


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_tt_and_ht_kernels_on_cuda(dtype, gen):
    shape = (3, 4, 5, 2)
    r = [1, 2, 3, 2, 1]
    cores = [torch.randn(r[k], n, r[k + 1], generator=gen, dtype=dtype) for k, n in enumerate(shape)]
    cg = [c.to(DEV) for c in cores]
    full = K.tt_full(cores)
    assert_close(K.tt_full(cg).cpu(), full, **GTOL[dtype])
    assert_close(K.tt_inner(cg, cg).cpu(), K.tt_inner(cores, cores), rtol=1e-3 if dtype == torch.float32 else 1e-9,
                 atol=0)
    idx = torch.tensor([[0, 1, 2, 1], [2, 3, 4, 0]])
    assert_close(K.tt_entries(cg, idx.to(DEV)).cpu(), full[tuple(idx.T)], **GTOL[dtype])
    vecs = [torch.randn(5, n, generator=gen, dtype=dtype) for n in shape]
    assert_close(K.tt_contract_vectors(cg, [v.to(DEV) for v in vecs]).cpu(), K.tt_contract_vectors(cores, vecs),
                 **GTOL[dtype])
    leaves = [torch.randn(n, 2, generator=gen, dtype=dtype) for n in shape]
    tr = {node: torch.randn(2, 2, 1 if node == (0, 4) else 2, generator=gen, dtype=dtype) for node in K.ht_tree(4)}
    lg, tg = [u.to(DEV) for u in leaves], {k: v.to(DEV) for k, v in tr.items()}
    assert_close(K.ht_full(lg, tg).cpu(), K.ht_full(leaves, tr), **GTOL[dtype])
    assert_close(K.ht_inner(lg, tg, lg, tg).cpu(), K.ht_inner(leaves, tr, leaves, tr),
                 rtol=1e-3 if dtype == torch.float32 else 1e-9, atol=0)


@needs_cuda
def test_mixed_cpu_cuda_inputs_rejected(gen):
    T = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^M\b"):
        K.mode_dot(T, torch.randn(2, 4, dtype=torch.float64, device=DEV), 1)
    with pytest.raises(ValueError, match=r"^factors\[1\]"):
        K.mttkrp(T, [torch.randn(3, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64, device=DEV),
                     torch.randn(5, 2, dtype=torch.float64)], 0)


# ---------------------------------------------------------------- decompositions on CUDA
@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_decompositions_on_cuda(dtype, gen):
    shape, R = (6, 7, 8), 3
    F = [torch.linalg.qr(torch.randn(n, R, generator=gen, dtype=torch.float64)).Q.to(dtype) for n in shape]
    T = K.cp_full(torch.tensor([1.0, 1.5, 2.0], dtype=dtype), F).to(DEV)
    exact = 1e-3 if dtype == torch.float32 else 1e-6

    cp, rec = D.cp_als(T, R, n_iter=200, init="svd", seed=0)
    assert cp.device.type == "cuda" and cp.dtype == dtype and cp.full().device.type == "cuda"
    assert rec.errors[-1] < exact
    nn, _ = D.nn_cp(T.abs(), 2, n_iter=20, seed=0)
    assert nn.device.type == "cuda" and nn.dtype == dtype

    tk = D.hosvd(T, (3, 3, 3))
    assert tk.device.type == "cuda" and tk.dtype == dtype and rel_err(tk.full(), T) < exact
    tk, _ = D.hooi(T, (3, 3, 3), n_iter=5)
    assert tk.device.type == "cuda" and rel_err(tk.full(), T) < exact

    tt = D.tt_svd(T, rank=3)
    assert tt.device.type == "cuda" and tt.dtype == dtype and rel_err(tt.full(), T) < exact
    tt2 = D.tt_round(tt, rank=3)
    assert tt2.device.type == "cuda" and rel_err(tt2.full(), T) < exact
    ht = D.ht_svd(T, rank=3)
    assert ht.device.type == "cuda" and ht.dtype == dtype and rel_err(ht.full(), T) < exact

    # formats move between devices and agree with their CPU copies
    for x in (cp, tk, tt, ht):
        y = x.to("cpu")
        assert y.device.type == "cpu"
        assert_close(y.full(), x.full().cpu(), **GTOL[dtype])
        assert_close(Fmt.norm(x).cpu(), x.full().norm().cpu(), rtol=1e-3 if dtype == torch.float32 else 1e-9, atol=0)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cp_als_exact_residual_pass_on_cuda(dtype, gen):
    "The exact-residual step (two passes on the GPU, one shared pass on the CPU) agrees across devices, in cp_als too."
    T, Tg = _cpu_gpu(5, 6, 7, 4, gen=gen, dtype=dtype)
    F = [torch.randn(n, 3, generator=gen, dtype=dtype) for n in T.shape]
    Fg = [A.to(DEV) for A in F]
    Y, res = D._left_product_and_residual(T.reshape(30, -1), F, 2)
    Yg, resg = D._left_product_and_residual(Tg.reshape(30, -1), Fg, 2)
    assert Yg.device.type == "cuda" and resg.device.type == "cuda"
    assert_close(Yg.cpu(), Y, **GTOL[dtype])
    assert_close(resg.cpu(), res, **GTOL[dtype])
    errs = [D.cp_als(X, 3, n_iter=8, tol=0.0, seed=0, residual="exact", line_search=False)[1].errors for X in (T, Tg)]
    assert max(abs(a - b) for a, b in zip(*errs)) < (1e-3 if dtype == torch.float32 else 1e-10)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_batched_hosvd_tt_svd_and_tree_hooi_on_cuda(dtype, gen):
    batch = torch.randn(16, 5, 6, 7, generator=gen, dtype=dtype)
    hs, ts = D.hosvd_batched(batch.to(DEV), (2, 3, 2)), D.tt_svd_batched(batch.to(DEV), rank=3)
    for b in (0, 7, 15):
        assert hs[b].device.type == "cuda" and ts[b].dtype == dtype
        assert_close(hs[b].full().cpu(), D.hosvd(batch[b], (2, 3, 2)).full(), **GTOL[dtype])
        assert_close(ts[b].full().cpu(), D.tt_svd(batch[b], rank=3).full(), **GTOL[dtype])
    T = torch.randn(6, 5, 4, 7, generator=gen, dtype=dtype)
    start = D.hosvd(T, 2)
    cpu, _ = D.hooi(T, 2, n_iter=3, tol=0.0, init=start)
    gpu, _ = D.hooi(T.to(DEV), 2, n_iter=3, tol=0.0, init=start.to(DEV))
    for U, V in zip(cpu.factors, gpu.factors):
        assert_close((V @ V.mT).cpu(), U @ U.mT, **GTOL[dtype])


@needs_cuda
def test_gemm_on_cuda_takes_the_torch_route_and_measured_tt_plans_run_there(gen):
    A, B = torch.randn(300, 500, generator=gen), torch.randn(500, 40, generator=gen)
    assert not K._wants_onednn(A.to(DEV), B.to(DEV))
    assert_close(K.gemm(A.to(DEV), B.to(DEV)).cpu(), A @ B, **GTOL[torch.float32])
    from tensornn.compression import TTLinear
    layer = TTLinear(1024, 1024, 4, in_modes=(8, 8, 16), out_modes=(8, 8, 16), seed=0, plan="measure").to(DEV)
    x = torch.randn(64, 1024, generator=gen).to(DEV)
    y = layer(x)
    assert (64, True) in layer._plans and all(G.grad is None for G in layer.cores)
    assert_close(y, x @ layer.full_weight().T + layer.bias, **GTOL[torch.float32])


@needs_cuda
def test_tt_linear_model_plan_charges_the_einsum_order_on_cuda():
    from tensornn.compression import TTLinear
    layer = TTLinear(1024, 1024, 16, in_modes=(8, 8, 16), out_modes=(8, 8, 16), seed=0)
    assert layer._model_plan(4) not in (None, "dense")                 # on the CPU the opt_einsum order wins at batch 4
    layer = layer.to(DEV)
    layer._plans.clear()
    costs = layer._plan_costs(4)
    assert costs["einsum"][0] >= 10 ** 9 and layer._model_plan(4) in (None, "dense")
    x = torch.randn(4, 1024, device=DEV)
    assert_close(layer(x), x @ layer.full_weight().mT + layer.bias, **GTOL[torch.float32])
    from tensornn.compression import _MOVE_COST
    cpu = TTLinear(1024, 1024, 16, in_modes=(8, 8, 16), out_modes=(8, 8, 16), seed=0)
    big_cpu, big_gpu = cpu._plan_costs(4096), layer._plan_costs(4096)       # the memory charge is the device's
    assert _MOVE_COST["cuda"] < _MOVE_COST["cpu"] and big_gpu["sweep"] < big_cpu["sweep"]
