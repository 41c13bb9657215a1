"""HOSVD and TT-SVD: the Gram route of `_left_subspace` against full SVDs of the unfoldings, and against TensorLy.

    python bench/hosvd_tt.py [--size 200] [--order 3] [--rank 20] [--noise 1e-3] [--sweeps 5] [--repeats 5]
                             [--dtype float32] [--device cpu|cuda] [--threads N]

A Tucker tensor of multilinear rank `--rank` in every mode plus relative Gaussian noise. Rows, timed interleaved in
one process (each once in every repeat, in a shuffled order, so load changes hit all alike; the median is reported):

* tensornn `hosvd(T, rank)` (Gram eigendecompositions where accurate, see chapter 01b);
* the same truncation with `torch.linalg.svd` of every unfolding (the algorithm before the Gram route);
* TensorLy's `tucker(T, rank, n_iter_max=1, init='svd')` (HOSVD by SVDs plus at most one HOOI sweep: an upper bound of
  its HOSVD);
* tntorch's `Tensor(T, ranks_tucker=r)` where tntorch is installed (`pip install tntorch`);
* HOOI sweeps from one HOSVD start: tensornn `hooi` (a dimension tree: two full-size products per sweep) against
  TensorLy's `tucker`, as time per sweep;
* tensornn `tt_svd(T, rank=r)` against TensorLy's `tensor_train(T, r)`, tntorch's `Tensor(T, ranks_tt=r)`, teneva's
  `svd` (NumPy, where installed), and the SVD-route TT-SVD;
* TT rounding of a train of rank 2r (a rank-r train plus 1% of another) to rank r: tensornn `tt_round`, tntorch
  `round_tt`, teneva `truncate` (TensorLy has no TT rounding).

Beside every time: the peak memory of one call above what was resident before it (bench/common.py).

The relative error of every result is printed beside its time, so a faster path that lost accuracy shows.
"""
from __future__ import annotations

import argparse
import math
import os

import torch

import tensorly as tl
from tensorly.decomposition import tensor_train, tucker

try:
    import tntorch as tn
except ImportError:
    tn = None
try:
    import teneva
except ImportError:
    teneva = None

from tensornn import decompositions as D
from tensornn.formats import TTTensor, TuckerTensor, inner, random_tt
from tensornn.kernels import multi_mode_dot, unfold

from common import median_times, peaks_mib


def hosvd_by_svd(T, rank):
    "HOSVD with a full SVD of every unfolding (the reference algorithm)."
    factors = [torch.linalg.svd(unfold(T, k), full_matrices=False)[0][:, :rank] for k in range(T.ndim)]
    return TuckerTensor(multi_mode_dot(T, factors, transpose=True), factors)


def tt_by_svd(T, rank):
    "TT-SVD with a full SVD at every step (the reference algorithm)."
    cores, C, r_prev = [], T, 1
    for k in range(T.ndim - 1):
        U, S, Vh = D._svd_truncate(C.reshape(r_prev * T.shape[k], -1), None, rank)
        cores.append(U.reshape(r_prev, T.shape[k], U.shape[1]))
        C, r_prev = S[:, None] * Vh, U.shape[1]
    cores.append(C.reshape(r_prev, T.shape[-1], 1))
    return TTTensor(cores)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--rank", type=int, default=20)
    p.add_argument("--noise", type=float, default=1e-3)
    p.add_argument("--sweeps", type=int, default=5, help="HOOI sweeps timed, from one HOSVD start")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-teneva", action="store_true",
                   help="leave out teneva: its NumPy BLAS threads and torch's OpenMP threads slow each other down "
                        "when interleaved on a machine with few cores")
    args = p.parse_args(argv)
    global teneva
    if args.no_teneva: teneva = None
    if args.threads: torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    tl.set_backend("pytorch")
    n, d, r = args.size, args.order, args.rank
    T = noisy_tucker(n, d, r, args.noise).to(device=device, dtype=dtype)
    print(f"{'x'.join([str(n)] * d)} tensor ({T.numel() * T.element_size() / 2 ** 20:.0f} MiB), multilinear rank {r} "
          f"+ {args.noise:g} relative noise, {args.dtype}, {device}, {torch.get_num_threads()} threads, median of "
          f"{args.repeats} interleaved repeats; peak MiB: above what was resident before the call, result included; "
          "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    fns = {"tensornn hosvd (Gram where accurate)": lambda: D.hosvd(T, r),
           "hosvd by full SVDs": lambda: hosvd_by_svd(T, r),
           "TensorLy tucker (HOSVD + <= 1 sweep)": lambda: tucker(T, [r] * d, n_iter_max=1, init="svd", tol=0)}
    if tn is not None: fns["tntorch Tensor(ranks_tucker=r)"] = lambda: tn.Tensor(T, ranks_tucker=r)
    table("HOSVD", fns, T, device, args.repeats)
    hooi_table(T, r, args.sweeps, device, args.repeats)
    rounding_table(r, device, dtype, args.repeats)      # before the NumPy TT-SVD, whose BLAS threads linger
    T_np = T.cpu().numpy()
    fns = {"tensornn tt_svd (Gram where accurate)": lambda: D.tt_svd(T, rank=r),
           "tt_svd by full SVDs": lambda: tt_by_svd(T, r),
           "TensorLy tensor_train": lambda: tensor_train(T, [1] + [r] * (d - 1) + [1])}
    if tn is not None: fns["tntorch Tensor(ranks_tt=r)"] = lambda: tn.Tensor(T, ranks_tt=r)
    if teneva is not None and device.type == "cpu": fns["teneva svd (NumPy)"] = lambda: teneva.svd(T_np, 1e-12, r)
    table("TT-SVD", fns, T, device, args.repeats)


def noisy_tucker(n, d, r, noise):
    "A Tucker tensor of multilinear rank r (orthonormal factors, Gaussian core) plus relative Gaussian noise, float64."
    g = torch.Generator().manual_seed(0)
    core = torch.randn((r,) * d, generator=g, dtype=torch.float64)
    Us = [torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64))[0] for _ in range(d)]
    T = multi_mode_dot(core, Us)
    return T + noise * T.norm() / math.sqrt(T.numel()) * torch.randn(T.shape, generator=g, dtype=torch.float64)


def as_dense(X):
    "The dense tensor of any contender's result."
    if hasattr(X, "full"): return X.full()
    if tn is not None and isinstance(X, tn.Tensor): return X.torch()
    if isinstance(X, list): return torch.as_tensor(teneva.full(X))
    if isinstance(X, tuple) and len(X) == 2 and isinstance(X[1], list) and X[1] and isinstance(X[1][0], float):
        return as_dense(X[0])                                                        # (result, errors)
    return tl.tucker_to_tensor(X) if len(X) == 2 and not isinstance(X[0], list) else tl.tt_to_tensor(X)


def table(title, fns, T, device, repeats):
    "Time every contender (the first is the reference): ms, peak MiB, relative error and the time ratio."
    t, out = median_times(fns, device, repeats)
    mem = peaks_mib(fns, device)
    base = t[next(iter(fns))]
    print(f"\n{title:44s} {'ms':>9s} {'peak MiB':>9s} {'rel. error':>11s} {'time / tensornn':>16s}")
    for name, X in out.items():
        full = as_dense(X).to(device=T.device, dtype=T.dtype)
        print(f"{name:44s} {1e3 * t[name]:9.1f} {mem[name]:9.1f} {float((full - T).norm() / T.norm()):11.3e} "
              f"{t[name] / base:16.2f}")


def hooi_table(T, r, k, device, repeats):
    "HOOI sweeps from the same HOSVD start; the time per sweep (each library's own count of sweeps done)."
    start = D.hosvd(T, r)
    tl_start = tl.tucker_tensor.TuckerTensor((start.core, list(start.factors)))
    ours = lambda: D.hooi(T, r, n_iter=k, tol=0.0, init=start)
    theirs = lambda: tucker(T, [r] * T.ndim, n_iter_max=k, init=tl_start, tol=0, return_errors=True)
    fns = {f"tensornn hooi (dimension tree)": ours, f"TensorLy tucker": theirs}
    t, out = median_times(fns, device, repeats)
    mem = peaks_mib(fns, device)
    done = {"tensornn hooi (dimension tree)": out[next(iter(fns))][1].n_iter, "TensorLy tucker": len(out["TensorLy tucker"][1])}
    per = {name: t[name] / max(done[name], 1) for name in fns}
    base = per[next(iter(fns))]
    print(f"\n{'HOOI from one HOSVD start, per sweep':44s} {'ms':>9s} {'peak MiB':>9s} {'sweeps':>7s} {'rel. error':>11s} "
          f"{'time / tensornn':>16s}")
    for name, (X, _) in out.items():
        full = as_dense(X).to(device=T.device, dtype=T.dtype)
        print(f"{name:44s} {1e3 * per[name]:9.1f} {mem[name]:9.1f} {done[name]:7d} "
              f"{float((full - T).norm() / T.norm()):11.3e} {per[name] / base:16.2f}")


def tt_sum(a: list, b: list) -> list:
    "Cores of the sum of two tensor trains (ranks add)."
    d, out = len(a), []
    for k, (x, y) in enumerate(zip(a, b)):
        if k == 0: out.append(torch.cat([x, y], 2))
        elif k == d - 1: out.append(torch.cat([x, y], 0))
        else:
            z = x.new_zeros(x.shape[0] + y.shape[0], x.shape[1], x.shape[2] + y.shape[2])
            z[:x.shape[0], :, :x.shape[2]], z[x.shape[0]:, :, x.shape[2]:] = x, y
            out.append(z)
    return out


def tn_round(cores, r):
    t = tn.Tensor([c.clone() for c in cores])
    t.round_tt(1e-14, r)
    return t


def rounding_train(r, n_modes=12, n=16) -> list:
    "Float64 cores of the train the rounding benches round: a rank-r train plus 1% of another (TT rank 2r)."
    x, y = (random_tt((n,) * n_modes, r, seed=s, dtype=torch.float64) for s in (1, 2))
    y.cores[0] = 1e-2 * y.cores[0] * float(x.norm() / y.norm())
    return tt_sum(x.cores, y.cores)


def rounding_table(r, device, dtype, repeats, n_modes=12, n=16):
    "Round a train of rank 2r (a rank-r train plus 1% of another) to rank r; the error is measured exactly from the trains."
    cores = [c.to(device=device, dtype=dtype) for c in rounding_train(r, n_modes, n)]
    big = TTTensor(cores)
    fns = {"tensornn tt_round": lambda: D.tt_round(big, rank=r)}
    if tn is not None: fns["tntorch round_tt (on a copy: it rounds in place)"] = lambda: tn_round(cores, r)
    if teneva is not None and device.type == "cpu":
        cores_np = [c.cpu().numpy() for c in cores]
        fns["teneva truncate (NumPy)"] = lambda: teneva.truncate(cores_np, 1e-14, r)
    t, out = median_times(fns, device, repeats)
    mem = peaks_mib(fns, device)
    base = t[next(iter(fns))]
    big64 = TTTensor([c.to(torch.float64) for c in cores])
    norm2 = float(inner(big64, big64))
    print(f"\nTT rounding, {n_modes} modes of size {n}: a rank-{r} train plus 1% of another (TT rank {2 * r}) rounded "
          f"to rank {r}")
    print(f"{'':44s} {'ms':>9s} {'peak MiB':>9s} {'rel. error':>11s} {'time / tensornn':>16s}")
    for name, X in out.items():
        Y = TTTensor([torch.as_tensor(c).to(device=device, dtype=torch.float64) for c in getattr(X, "cores", X)])
        err2 = norm2 - 2 * float(inner(big64, Y)) + float(inner(Y, Y))
        print(f"{name:44s} {1e3 * t[name]:9.2f} {mem[name]:9.1f} {math.sqrt(max(err2, 0) / norm2):11.3e} "
              f"{t[name] / base:16.2f}")


if __name__ == "__main__":
    main()
