"""HOSVD and TT-SVD: the Gram route of `_left_subspace` against full SVDs of the unfoldings, and against TensorLy.

    python bench/hosvd_tt.py [--size 200] [--order 3] [--rank 20] [--noise 1e-3] [--repeats 5] [--dtype float32]
                             [--device cpu|cuda] [--threads N]

A Tucker tensor of multilinear rank `--rank` in every mode plus relative Gaussian noise. Rows, timed interleaved in
one process (round-robin in every repeat, so load changes hit all alike; the median is reported):

* tensornn `hosvd(T, rank)` (Gram eigendecompositions where accurate, see chapter 01b);
* the same truncation with `torch.linalg.svd` of every unfolding (the algorithm before the Gram route);
* TensorLy's `tucker(T, rank, n_iter_max=1, init='svd')` (HOSVD by SVDs plus at most one HOOI sweep: an upper bound of
  its HOSVD);
* tensornn `tt_svd(T, rank=r)` against TensorLy's `tensor_train(T, r)`, and the SVD-route TT-SVD.

The relative error of every result is printed beside its time, so a faster path that lost accuracy shows.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

import tensorly as tl
from tensorly.decomposition import tensor_train, tucker

from tensornn import decompositions as D
from tensornn.formats import TTTensor, TuckerTensor
from tensornn.kernels import multi_mode_dot, unfold


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize(device)


def median_times(fns: dict, device, repeats: int):
    "Median wall time of each `fns[name]()` over `repeats` interleaved rounds, after one untimed warm-up each."
    for fn in fns.values(): fn()
    sync(device)
    times, out = {name: [] for name in fns}, {}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device); t0 = time.perf_counter()
            out[name] = fn()
            sync(device); times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}, out


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
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    tl.set_backend("pytorch")
    n, d, r = args.size, args.order, args.rank
    g = torch.Generator().manual_seed(0)
    core = torch.randn((r,) * d, generator=g, dtype=torch.float64)
    Us = [torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64))[0] for _ in range(d)]
    T = multi_mode_dot(core, Us)
    T = T + args.noise * T.norm() / math.sqrt(T.numel()) * torch.randn(T.shape, generator=g, dtype=torch.float64)
    T = T.to(device=device, dtype=dtype)
    print(f"{'x'.join([str(n)] * d)} tensor, multilinear rank {r} + {args.noise:g} relative noise, {args.dtype}, "
          f"{device}, {torch.get_num_threads()} threads, median of {args.repeats} interleaved repeats; "
          "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    fns = {"tensornn hosvd (Gram where accurate)": lambda: D.hosvd(T, r),
           "hosvd by full SVDs": lambda: hosvd_by_svd(T, r),
           "TensorLy tucker (HOSVD + <= 1 sweep)": lambda: tucker(T, [r] * d, n_iter_max=1, init="svd", tol=0)}
    table("HOSVD", fns, lambda X: tl.tucker_to_tensor(X), T, device, args.repeats)
    fns = {"tensornn tt_svd (Gram where accurate)": lambda: D.tt_svd(T, rank=r),
           "tt_svd by full SVDs": lambda: tt_by_svd(T, r),
           "TensorLy tensor_train": lambda: tensor_train(T, [1] + [r] * (d - 1) + [1])}
    table("TT-SVD", fns, lambda X: tl.tt_to_tensor(X), T, device, args.repeats)


def table(title, fns, tensorly_full, T, device, repeats):
    "Time every contender (the first is the reference) and print ms, relative error and the time ratio."
    t, out = median_times(fns, device, repeats)
    base = t[next(iter(fns))]
    print(f"\n{title:40s} {'ms':>9s} {'rel. error':>11s} {'time / tensornn':>16s}")
    for name, X in out.items():
        full = X.full() if hasattr(X, "full") else tensorly_full(X)
        print(f"{name:40s} {1e3 * t[name]:9.1f} {float((full - T).norm() / T.norm()):11.3e} {t[name] / base:16.2f}")

if __name__ == "__main__":
    main()
