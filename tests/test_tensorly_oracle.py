"""Peer oracle: TensorLy (PyTorch backend) on the same data.

Kernels must agree with TensorLy's to rounding (same row-major conventions); the decompositions must reach an
error no worse than TensorLy's on the same tensor and rank (plus a small slack).
"""
from __future__ import annotations

import pytest
import torch

from conftest import DTYPES, TOL, randn, rel_err
from tensornn import kernels as K
from tensornn import decompositions as D
from tensornn.testing import assert_close

pytestmark = [pytest.mark.usefixtures("single_thread")]

SHAPES = [(3, 4, 5), (2, 3, 4, 5), (2, 3, 2, 3, 2)]


# ---------------------------------------------------------------- kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_unfold_fold_match_tensorly(tl_torch, shape, dtype, gen):
    tl = tl_torch
    T = randn(*shape, gen=gen, dtype=dtype)
    for mode in range(len(shape)):
        M = tl.unfold(T, mode)
        assert_close(K.unfold(T, mode), M, rtol=0, atol=0)
        assert_close(K.fold(M, mode, shape), tl.fold(M, mode, shape), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_mode_dot_matches_tensorly(tl_torch, shape, dtype, gen):
    tl = tl_torch
    T = randn(*shape, gen=gen, dtype=dtype)
    for mode in range(len(shape)):
        M = randn(3, shape[mode], gen=gen, dtype=dtype)
        assert_close(K.mode_dot(T, M, mode), tl.tenalg.mode_dot(T, M, mode), **TOL[dtype])
        assert_close(K.mode_dot(T, M.T, mode, transpose=True), tl.tenalg.mode_dot(T, M.T, mode, transpose=True),
                     **TOL[dtype])
        v = randn(shape[mode], gen=gen, dtype=dtype)
        assert_close(K.mode_dot(T, v, mode), tl.tenalg.mode_dot(T, v, mode), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_mode_dot_matches_tensorly(tl_torch, dtype, gen):
    tl = tl_torch
    T = randn(3, 4, 5, gen=gen, dtype=dtype)
    Ms = [randn(2, n, gen=gen, dtype=dtype) for n in (3, 4, 5)]
    assert_close(K.multi_mode_dot(T, Ms), tl.tenalg.multi_mode_dot(T, Ms), **TOL[dtype])
    assert_close(K.multi_mode_dot(T, Ms, skip=1), tl.tenalg.multi_mode_dot(T, Ms, skip=1), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", [(3, 4), (2, 3, 4), (2, 3, 2, 3)])
def test_khatri_rao_matches_tensorly(tl_torch, sizes, dtype, gen):
    tl = tl_torch
    mats = [randn(n, 4, gen=gen, dtype=dtype) for n in sizes]
    assert_close(K.khatri_rao(mats), tl.tenalg.khatri_rao(mats), **TOL[dtype])
    for skip in range(len(sizes)):
        assert_close(K.khatri_rao(mats, skip=skip), tl.tenalg.khatri_rao(mats, skip_matrix=skip), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [(6, 5, 2, 3)])
def test_mttkrp_matches_tensorly(tl_torch, shape, dtype, gen):
    tl = tl_torch
    R = 3
    T = randn(*shape, gen=gen, dtype=dtype)
    F = [randn(n, R, gen=gen, dtype=dtype) for n in shape]
    w = torch.ones(R, dtype=dtype)
    for mode in range(len(shape)):
        expected = tl.tenalg.unfolding_dot_khatri_rao(T, (w, F), mode)
        assert_close(K.mttkrp(T, F, mode), expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_builders_match_tensorly(tl_torch, dtype, gen):
    tl = tl_torch
    shape = (3, 4, 5)
    w = randn(3, gen=gen, dtype=dtype)
    F = [randn(n, 3, gen=gen, dtype=dtype) for n in shape]
    assert_close(K.cp_full(w, F), tl.cp_to_tensor((w, F)), **TOL[dtype])
    core = randn(2, 3, 2, gen=gen, dtype=dtype)
    U = [randn(n, r, gen=gen, dtype=dtype) for n, r in zip(shape, core.shape)]
    assert_close(K.tucker_full(core, U), tl.tucker_to_tensor((core, U)), **TOL[dtype])
    cores = [randn(1, 3, 2, gen=gen, dtype=dtype), randn(2, 4, 3, gen=gen, dtype=dtype),
             randn(3, 5, 1, gen=gen, dtype=dtype)]
    assert_close(K.tt_full(cores), tl.tt_to_tensor(cores), **TOL[dtype])


# ---------------------------------------------------------------- decompositions vs TensorLy
def _low_rank_plus_noise(shape, R, noise, gen):
    F = [torch.randn(n, R, generator=gen, dtype=torch.float64) for n in shape]
    T = K.cp_full(torch.ones(R, dtype=torch.float64), F)
    return T + noise * T.norm() / T.numel() ** 0.5 * torch.randn(*shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape,R", [((8, 9, 10), 3), ((6, 7, 5, 4), 4)])
def test_cp_als_error_at_most_tensorly_parafac(tl_torch, shape, R, seed):
    from tensorly.decomposition import parafac
    gen = torch.Generator().manual_seed(seed)
    T = _low_rank_plus_noise(shape, R, 0.1, gen)
    n_iter = 50
    cp_tl = parafac(T, R, n_iter_max=n_iter, init="svd", tol=0)
    err_tl = rel_err(tl_torch.cp_to_tensor(cp_tl), T)
    cp, rec = D.cp_als(T, R, n_iter=n_iter, tol=0.0, init="svd")
    err = rel_err(cp.full(), T)
    assert err <= err_tl + 1e-3, (err, err_tl)


@pytest.mark.parametrize("seed", [0, 1])
def test_hooi_error_at_most_tensorly_tucker(tl_torch, seed):
    from tensorly.decomposition import tucker
    gen = torch.Generator().manual_seed(seed)
    T = _low_rank_plus_noise((7, 8, 9), 4, 0.3, gen)
    ranks = (3, 2, 3)
    core, factors = tucker(T, rank=list(ranks), n_iter_max=50, init="svd", tol=1e-12)
    err_tl = rel_err(tl_torch.tucker_to_tensor((core, factors)), T)
    tk, rec = D.hooi(T, ranks, n_iter=50)
    err = rel_err(tk.full(), T)
    assert err <= err_tl + 1e-8, (err, err_tl)
    # plain HOSVD is no better than the iterated one
    assert rel_err(D.hosvd(T, ranks).full(), T) >= err - 1e-10


@pytest.mark.parametrize("max_rank", [1, 2, 3, 5])
def test_tt_svd_matches_tensorly_tensor_train(tl_torch, max_rank, gen):
    from tensorly.decomposition import tensor_train
    T = torch.randn(3, 4, 5, 3, generator=gen, dtype=torch.float64)
    tt_tl = tensor_train(T, rank=max_rank)
    err_tl = rel_err(tl_torch.tt_to_tensor(tt_tl), T)
    tt = D.tt_svd(T, rank=max_rank)
    err = rel_err(tt.full(), T)
    # both are the same sequence of truncated SVDs: same ranks, same (optimal-per-step) error
    assert tuple(tt.rank) == tuple(c.shape[0] for c in tt_tl) + (1,)
    assert abs(err - err_tl) <= 1e-8 + 1e-6 * err_tl, (err, err_tl)
