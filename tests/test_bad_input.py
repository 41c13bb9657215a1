"""Bad input gets a ValueError/TypeError whose message names the offending argument.

Mixed devices are simulated with PyTorch's 'meta' device, so these tests run without a GPU.
"""
from __future__ import annotations


import pytest
import torch

from conftest import randn
from tensornn import validation as Val
from tensornn import kernels as K
from tensornn import formats as Fmt
from tensornn import decompositions as D

pytestmark = [pytest.mark.usefixtures("single_thread")]

NAN = float("nan")
INF = float("inf")


# ---------------------------------------------------------------- validation helpers
@pytest.mark.parametrize("bad,exc,match", [
    ([1.0, 2.0], TypeError, r"^T\b"),
    (torch.arange(6).reshape(2, 3), TypeError, r"^T\b"),                       # integer dtype
    (torch.zeros(0, 3), ValueError, r"^T\b"),                                   # empty
    (torch.tensor([[1.0, NAN]]), ValueError, r"^T\b"),
    (torch.tensor([[1.0, INF]]), ValueError, r"^T\b"),
    (torch.tensor([[1.0, -INF]]), ValueError, r"^T\b"),
])
def test_check_tensor_rejects(bad, exc, match):
    with pytest.raises(exc, match=match):
        Val.check_tensor(bad, "T")


def test_check_tensor_shape_options():
    x = torch.zeros(2, 3)
    assert Val.check_tensor(x, "x", ndim=2) is x
    with pytest.raises(ValueError, match=r"^x\b.*3"):
        Val.check_tensor(x, "x", ndim=3)
    with pytest.raises(ValueError, match=r"^x\b"):
        Val.check_tensor(x, "x", min_ndim=3)
    assert Val.check_tensor(torch.zeros(0, 3), "x", allow_empty=True).shape == (0, 3)
    assert Val.check_tensor(torch.tensor([NAN]), "x", finite=False).shape == (1,)
    assert Val.check_tensor(torch.zeros(2, 3, device="meta"), "x").device.type == "meta"


@pytest.mark.parametrize("bad,exc,match", [
    (0, ValueError, r"^rank\b"), (-2, ValueError, r"^rank\b"), (True, TypeError, r"^rank\b"), (2.0, TypeError, r"^rank\b"),
    ("3", TypeError, r"^rank\b"), (None, TypeError, r"^rank\b"), ((2, 0), ValueError, r"^rank\[1\]"),
])
def test_check_rank_rejects(bad, exc, match):
    with pytest.raises(exc, match=match):
        Val.check_rank(bad)


def test_check_rank_length():
    with pytest.raises(ValueError, match=r"^ranks\b.*3.*2"):
        Val.check_rank((2, 2), "ranks", length=3)


def test_check_same_device_dtype():
    a = torch.zeros(2)
    Val.check_same_device_dtype(a=a, b=torch.ones(3), c=None)
    with pytest.raises(ValueError, match=r"^b\b.*meta"):
        Val.check_same_device_dtype(a=a, b=torch.zeros(2, device="meta"))
    with pytest.raises(TypeError, match=r"^b\b.*float64"):
        Val.check_same_device_dtype(a=a, b=torch.zeros(2, dtype=torch.float64))


def test_make_generator_rejects_non_generator():
    with pytest.raises(TypeError, match=r"^generator\b"):
        K.make_generator(generator=42)


# ---------------------------------------------------------------- kernels
def test_unfold_fold_bad_input(gen):
    T = randn(3, 4, 5, gen=gen)
    with pytest.raises(TypeError, match=r"^T\b"):
        K.unfold(T.numpy(), 0)
    with pytest.raises(ValueError, match=r"^mode\b"):
        K.unfold(T, 3)
    with pytest.raises(TypeError, match=r"^mode\b"):
        K.unfold(T, 1.0)
    with pytest.raises(ValueError, match=r"^M\b"):
        K.fold(K.unfold(T, 0), 0, (3, 4, 6))
    with pytest.raises(ValueError, match=r"^M\b"):
        K.fold(T, 0, (3, 4, 5))


def test_mode_dot_bad_input(gen):
    T = randn(3, 4, 5, gen=gen, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"^M\b"):
        K.mode_dot(T, torch.zeros(2, 3), 1)                                    # wrong inner size
    with pytest.raises(ValueError, match=r"^M\b"):
        K.mode_dot(T, torch.zeros(5), 1)                                        # wrong vector length
    with pytest.raises(ValueError, match=r"^M\b"):
        K.mode_dot(T, torch.zeros(2, 4, 1), 1)                                  # not a matrix
    with pytest.raises(TypeError, match=r"^M\b"):
        K.mode_dot(T, torch.zeros(2, 4, dtype=torch.float64), 1)                # mixed dtypes
    with pytest.raises(ValueError, match=r"^M\b"):
        K.mode_dot(T, torch.zeros(2, 4, device="meta"), 1)                      # mixed devices
    with pytest.raises(ValueError, match=r"^mode\b"):
        K.mode_dot(T, torch.zeros(2, 4), 7)
    with pytest.raises(ValueError, match=r"^modes\b"):
        K.multi_mode_dot(T, [torch.zeros(2, 3), torch.zeros(2, 4)], modes=[0])


def test_khatri_rao_bad_input(gen):
    with pytest.raises(ValueError, match=r"^matrices\b"):
        K.khatri_rao([])
    with pytest.raises(ValueError, match=r"^matrices\[1\]"):
        K.khatri_rao([torch.zeros(3, 2), torch.zeros(4, 3)])                    # column counts differ
    with pytest.raises(TypeError, match=r"^matrices\[1\]"):
        K.khatri_rao([torch.zeros(3, 2), torch.zeros(4, 2, dtype=torch.float64)])
    with pytest.raises(ValueError, match=r"^matrices\[1\]"):
        K.khatri_rao([torch.zeros(3, 2), torch.zeros(4, 2, device="meta")])
    with pytest.raises(ValueError, match=r"^matrices\[0\]"):
        K.khatri_rao([torch.zeros(3), torch.zeros(4)])


def test_mttkrp_bad_input(gen):
    T = randn(3, 4, 5, gen=gen)
    F = [randn(n, 2, gen=gen) for n in (3, 4, 5)]
    with pytest.raises(ValueError, match=r"^factors\b"):
        K.mttkrp(T, F[:2], 0)                                                   # one factor per mode
    with pytest.raises(ValueError, match=r"^factors\[2\]"):
        K.mttkrp(T, [F[0], F[1], randn(6, 2, gen=gen)], 0)                      # wrong rows
    with pytest.raises(ValueError, match=r"^factors\[2\]"):
        K.mttkrp(T, [F[0], F[1], randn(5, 3, gen=gen)], 0)                      # wrong rank
    with pytest.raises(ValueError, match=r"^factors\[1\]"):
        K.mttkrp(T, [F[0], F[1].to("meta"), F[2]], 0)
    with pytest.raises(TypeError, match=r"^factors\[1\]"):
        K.mttkrp(T, [F[0], F[1].float(), F[2]], 0)
    with pytest.raises(ValueError, match=r"^T\b"):
        K.mttkrp(randn(3, gen=gen), [F[0]], 0)
    with pytest.raises(ValueError, match=r"^mode\b"):
        K.mttkrp(T, F, 3)


def test_cp_kernels_bad_input(gen):
    w = torch.ones(2, dtype=torch.float64)
    F = [randn(n, 2, gen=gen) for n in (3, 4)]
    with pytest.raises(ValueError, match=r"^factors_b\b"):
        K.cp_inner(w, F, w, F[:1])
    with pytest.raises(ValueError, match=r"^factors_b\[1\]"):
        K.cp_inner(w, F, w, [F[0], randn(5, 2, gen=gen)])
    with pytest.raises(TypeError, match=r"^index\b"):
        K.cp_entries(w, F, torch.zeros(2, 2))                                    # float indices
    with pytest.raises(ValueError, match=r"^index\b"):
        K.cp_entries(w, F, torch.zeros(2, 3, dtype=torch.long))                  # wrong number of modes
    with pytest.raises(ValueError, match=r"^index\b"):
        K.cp_entries(w, F, torch.tensor([[3, 0]]))                               # out of range
    with pytest.raises(ValueError, match=r"^index\b"):
        K.cp_entries(w, F, torch.tensor([[-1, 0]]))


def test_cp_full_rejects_mismatched_ranks(gen):
    "Factors with different column counts are a shape error naming `factors`, not a bare RuntimeError."
    with pytest.raises(ValueError, match=r"^factors\b"):
        K.cp_full(torch.ones(2, dtype=torch.float64), [randn(3, 2, gen=gen), randn(4, 3, gen=gen)])


def test_cp_inner_rejects_mixed_devices(gen):
    "A factor on another device is an error naming it, never a silently wrong number."
    w = torch.ones(2, dtype=torch.float64)
    F = [randn(3, 2, gen=gen), randn(4, 2, gen=gen)]
    with pytest.raises(ValueError, match=r"^factors_b\b"):
        K.cp_inner(w, F, w, [F[0], F[1].to("meta")])


def test_tucker_full_names_factors(gen):
    with pytest.raises(ValueError, match=r"^factors\b"):
        K.tucker_full(randn(2, 2, gen=gen), [randn(3, 3, gen=gen), randn(4, 2, gen=gen)])


def test_tt_kernels_bad_input(gen):
    good = [randn(1, 3, 2, gen=gen), randn(2, 4, 1, gen=gen)]
    with pytest.raises(ValueError, match=r"^cores\b"):
        K.tt_full([])
    with pytest.raises(ValueError, match=r"^cores\b"):
        K.tt_full([randn(2, 3, 2, gen=gen), randn(2, 4, 1, gen=gen)])           # r_0 != 1
    with pytest.raises(ValueError, match=r"^cores\[1\]"):
        K.tt_full([randn(1, 3, 2, gen=gen), randn(3, 4, 1, gen=gen)])           # ranks do not chain
    with pytest.raises(ValueError, match=r"^cores\[1\]"):
        K.tt_full([randn(1, 3, 2, gen=gen), randn(2, 4, gen=gen)])              # not 3-way
    with pytest.raises(ValueError, match=r"^cores\[1\]"):
        K.tt_full([good[0], good[1].to("meta")])
    with pytest.raises(TypeError, match=r"^cores\[1\]"):
        K.tt_full([good[0], good[1].float()])
    with pytest.raises(ValueError, match=r"^cores_b\b"):
        K.tt_inner(good, [randn(1, 3, 2, gen=gen), randn(2, 5, 1, gen=gen)])
    with pytest.raises(ValueError, match=r"^index\b"):
        K.tt_entries(good, torch.tensor([[0, 4]]))
    with pytest.raises(ValueError, match=r"^vectors\b"):
        K.tt_contract_vectors(good, [randn(2, 3, gen=gen)])
    with pytest.raises(ValueError, match=r"^vectors\[1\]"):
        K.tt_contract_vectors(good, [randn(2, 3, gen=gen), randn(2, 5, gen=gen)])
    with pytest.raises(ValueError, match=r"^vectors\[1\]"):
        K.tt_contract_vectors(good, [randn(2, 3, gen=gen), randn(3, 4, gen=gen)])   # batch sizes differ


def test_ht_kernels_bad_input(gen):
    leaves = [randn(3, 2, gen=gen), randn(4, 2, gen=gen), randn(5, 2, gen=gen)]
    tr = {(0, 2): randn(2, 2, 3, gen=gen), (0, 3): randn(3, 2, 1, gen=gen)}
    K.ht_full(leaves, tr)
    with pytest.raises(ValueError, match=r"^d\b"):
        K.ht_tree(0)
    with pytest.raises(ValueError, match=r"^transfers\b"):
        K.ht_full(leaves, {(0, 3): tr[(0, 3)]})                                 # a node missing
    with pytest.raises(ValueError, match=r"^transfers\b"):
        K.ht_full(leaves, {**tr, (0, 2): randn(2, 3, 3, gen=gen)})               # ranks do not match children
    with pytest.raises(ValueError, match=r"^transfers\b"):
        K.ht_full(leaves, {**tr, (0, 3): randn(3, 2, 2, gen=gen)})               # root rank != 1
    with pytest.raises(ValueError, match=r"^leaves\[1\]"):
        K.ht_full([leaves[0], leaves[1].to("meta"), leaves[2]], tr)
    with pytest.raises(ValueError, match=r"^vectors\b"):
        K.ht_contract_vectors(leaves, tr, [randn(2, 3, gen=gen)])


# ---------------------------------------------------------------- decompositions
def _bad_tensors():
    good = torch.randn(3, 4, 5, dtype=torch.float64)
    nan, inf = good.clone(), good.clone()
    nan[1, 2, 3] = NAN
    inf[0, 0, 0] = INF
    return [
        pytest.param(nan, ValueError, id="nan"),
        pytest.param(inf, ValueError, id="inf"),
        pytest.param(torch.zeros(3, 0, 5, dtype=torch.float64), ValueError, id="empty"),
        pytest.param(good.numpy().astype("float16"), TypeError, id="numpy-half"),   # float32/64 arrays are accepted (as_tensor)
        pytest.param(good.tolist(), TypeError, id="list"),
        pytest.param(torch.ones(3, 4, 5, dtype=torch.long), TypeError, id="integer"),
    ]


ALGOS = {
    "cp_als": lambda D, T: D.cp_als(T, 2, n_iter=2),
    "nn_cp": lambda D, T: D.nn_cp(T, 2, n_iter=2),
    "hosvd": lambda D, T: D.hosvd(T, (2, 2, 2)),
    "hooi": lambda D, T: D.hooi(T, (2, 2, 2), n_iter=2),
    "tt_svd": lambda D, T: D.tt_svd(T, rank=2),
    "ht_svd": lambda D, T: D.ht_svd(T, rank=2),
}


@pytest.mark.parametrize("algo", list(ALGOS))
@pytest.mark.parametrize("T,exc", _bad_tensors())
def test_algorithms_reject_bad_tensors(algo, T, exc):
    with pytest.raises(exc, match=r"^T\b"):
        ALGOS[algo](D, T)


@pytest.mark.parametrize("algo", ["cp_als", "nn_cp"])
def test_cp_rejects_order_one(algo):
    "A CP decomposition needs at least two modes (Tucker, TT and HT accept a vector as a trivial case)."
    with pytest.raises(ValueError, match=r"^T\b"):
        ALGOS[algo](D, torch.randn(5, dtype=torch.float64))


@pytest.mark.parametrize("rank", [0, -1, 2.5, "2", None])
def test_cp_rejects_bad_rank(rank):
    T = torch.randn(3, 4, 5, dtype=torch.float64)
    with pytest.raises((ValueError, TypeError), match=r"^rank\b"):
        D.cp_als(T, rank)
    with pytest.raises((ValueError, TypeError), match=r"^rank\b"):
        D.nn_cp(T, rank)


def test_tucker_rejects_bad_rank():
    T = torch.randn(3, 4, 5, dtype=torch.float64)
    for rank in [(2, 2), (2, 0, 2), (2, 2, 2, 2), (-1, 2, 2)]:
        with pytest.raises(ValueError, match=r"^rank\b"):
            D.hosvd(T, rank)
        with pytest.raises(ValueError, match=r"^rank\b"):
            D.hooi(T, rank)


def test_tt_ht_reject_bad_max_rank():
    T = torch.randn(3, 4, 5, dtype=torch.float64)
    for f in (D.tt_svd, D.ht_svd):
        with pytest.raises(ValueError, match=r"^max_rank\b"):
            f(T, max_rank=0)
        with pytest.raises(ValueError, match=r"^tol\b"):
            f(T, tol=-0.1)
    tt = D.tt_svd(T, max_rank=2)
    with pytest.raises(ValueError, match=r"^max_rank\b"):
        D.tt_round(tt, max_rank=0)
    with pytest.raises(TypeError, match=r"^tt\b"):
        D.tt_round(T, max_rank=2)                          # a dense tensor is not a TTTensor


def test_unknown_init_lists_choices():
    T = torch.randn(3, 4, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^init\b.*(svd.*random|random.*svd)"):
        D.cp_als(T, 2, init="bogus")
    with pytest.raises(ValueError, match=r"^init\b"):
        D.nn_cp(T, 2, init="bogus")
    with pytest.raises(ValueError, match=r"^init\b"):
        D.hooi(T, (2, 2, 2), init="bogus")


def test_cp_init_mismatch():
    "An initial CPTensor of the wrong shape, rank, dtype or device is rejected, naming `init`."
    T = torch.randn(3, 4, 5, dtype=torch.float64)
    F = [torch.randn(n, 2, dtype=torch.float64) for n in (3, 4, 5)]
    w = torch.ones(2, dtype=torch.float64)
    bad = [Fmt.CPTensor(w, [F[0], F[1], torch.randn(6, 2, dtype=torch.float64)]),             # wrong shape
           Fmt.CPTensor(torch.ones(3, dtype=torch.float64), [torch.randn(n, 3, dtype=torch.float64) for n in (3, 4, 5)]),
           Fmt.CPTensor(w.float(), [A.float() for A in F]),                                   # wrong dtype
           Fmt.CPTensor(w.to("meta"), [A.to("meta") for A in F])]                             # wrong device
    for init in bad:
        with pytest.raises((ValueError, TypeError), match=r"^init\b"):
            D.cp_als(T, 2, init=init, n_iter=2)


def test_format_constructors_reject_bad_input():
    f64 = dict(dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^factors\b"):
        Fmt.CPTensor(torch.ones(2, **f64), [torch.randn(3, 2, **f64), torch.randn(4, 3, **f64)])
    with pytest.raises(ValueError, match=r"^weights\b"):
        Fmt.CPTensor(torch.ones(3, **f64), [torch.randn(3, 2, **f64), torch.randn(4, 2, **f64)])
    with pytest.raises((ValueError, TypeError), match=r"^(factors|weights)\b"):
        Fmt.CPTensor(torch.ones(2, **f64), [torch.randn(3, 2, **f64), torch.randn(4, 2, **f64).to("meta")])
    with pytest.raises((ValueError, TypeError), match=r"^(factors|weights)\b"):
        Fmt.CPTensor(torch.ones(2, **f64), [torch.randn(3, 2, **f64), torch.randn(4, 2)])
    with pytest.raises(TypeError, match=r"^weights\b"):
        Fmt.CPTensor([1.0, 2.0], [torch.randn(3, 2, **f64)])
    with pytest.raises(ValueError, match=r"^(factors|core)\b"):
        Fmt.TuckerTensor(torch.randn(2, 2, **f64), [torch.randn(3, 2, **f64), torch.randn(4, 3, **f64)])
    with pytest.raises(ValueError, match=r"^(core|factors)\b"):
        Fmt.TuckerTensor(torch.randn(2, 2, 2, **f64), [torch.randn(3, 2, **f64), torch.randn(4, 2, **f64)])
    with pytest.raises(ValueError, match=r"^cores\b"):
        Fmt.TTTensor([torch.randn(1, 3, 2, **f64), torch.randn(3, 4, 1, **f64)])
    with pytest.raises((ValueError, TypeError), match=r"^cores\b"):
        Fmt.TTTensor([])
    leaves = [torch.randn(3, 2, **f64), torch.randn(4, 2, **f64)]
    with pytest.raises(ValueError, match=r"^transfers\b"):
        Fmt.HTTensor(leaves, {(0, 2): torch.randn(2, 3, 1, **f64)})


def test_entries_bad_index():
    cp = Fmt.CPTensor(torch.ones(2, dtype=torch.float64), [torch.randn(n, 2, dtype=torch.float64) for n in (3, 4)])
    with pytest.raises(ValueError, match=r"^index\b"):
        cp.entries(torch.tensor([[3, 0]]))
    with pytest.raises(TypeError, match=r"^index\b"):
        cp.entries(torch.zeros(1, 2))


def test_inner_shape_mismatch():
    a = torch.randn(3, 4, 5, dtype=torch.float64)
    tt = D.tt_svd(torch.randn(3, 4, 6, dtype=torch.float64), rank=2)
    with pytest.raises(ValueError, match=r"^b\b.*shape"):
        Fmt.inner(a, tt)


def test_algorithm_options_rejected():
    T = torch.randn(3, 4, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^n_iter\b"):
        D.cp_als(T, 2, n_iter=0)
    with pytest.raises(TypeError, match=r"^n_iter\b"):
        D.cp_als(T, 2, n_iter=2.5)
    with pytest.raises(ValueError, match=r"^tol\b"):
        D.cp_als(T, 2, tol=-1.0)
    with pytest.raises(ValueError, match=r"^tol\b"):
        D.cp_als(T, 2, tol=float("nan"))
    with pytest.raises(TypeError, match=r"^line_search\b"):
        D.cp_als(T, 2, line_search="yes")
    with pytest.raises(TypeError, match=r"^generator\b"):
        D.cp_als(T, 2, init="random", generator=3)
    with pytest.raises(ValueError, match=r"^n_iter\b"):
        D.nn_cp(T, 2, n_iter=0)
    with pytest.raises(ValueError, match=r"^n_iter\b"):
        D.hooi(T, 2, n_iter=0)
    with pytest.raises(ValueError, match=r"^init\b"):
        D.nn_cp(T.abs(), 2, init=Fmt.CPTensor(-torch.ones(2, dtype=torch.float64),
                                            [torch.rand(n, 2, dtype=torch.float64) for n in (3, 4, 5)]))
    with pytest.raises(ValueError, match=r"^rank\[0\]"):
        D.hosvd(T, (4, 2, 2))                                    # rank above the mode size


def test_options_are_keyword_only():
    T = torch.randn(3, 4, 5, dtype=torch.float64)
    with pytest.raises(TypeError):
        D.cp_als(T, 2, 10)
    with pytest.raises(TypeError):
        D.tt_svd(T, 2)


def test_inner_mixed_devices_and_dtypes():
    cp = Fmt.CPTensor(torch.ones(2, dtype=torch.float64), [torch.randn(n, 2, dtype=torch.float64) for n in (3, 4)])
    with pytest.raises(ValueError, match=r"^b\b"):
        Fmt.inner(cp, cp.to("meta"))
    with pytest.raises(TypeError, match=r"^b\b"):
        Fmt.inner(cp, cp.to(torch.float32))
    with pytest.raises(TypeError, match=r"^b\b"):
        Fmt.inner(cp, [[1.0]])
