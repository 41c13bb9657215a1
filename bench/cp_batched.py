"""Many small CP problems: `cp_als_batched` against a Python loop of `cp_als` and a loop of TensorLy's `parafac`.

    python bench/cp_batched.py [--batch 1000] [--size 10] [--rank 5] [--iters 50] [--repeats 3] [--dtype float32]
                               [--device cpu|cuda] [--threads N]

A batch of `--batch` tensors of shape size x size x size, each of CP rank `--rank` plus 1e-2 relative noise. Every
contender runs exactly `--iters` plain ALS sweeps (tol=0, no line search), so the work is equal; the median of
`--repeats` interleaved rounds is reported with the median final relative error, so speed bought with accuracy shows.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import tensorly as tl
from tensorly.decomposition import parafac

from tensornn.decompositions import cp_als, cp_als_batched
from tensornn.formats import random_cp


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize(device)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--size", type=int, default=10)
    p.add_argument("--rank", type=int, default=5)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    tl.set_backend("pytorch")
    g = torch.Generator().manual_seed(0)
    n, R, B = args.size, args.rank, args.batch
    T = torch.stack([random_cp((n, n, n), R, generator=g, dtype=torch.float64).full() for _ in range(B)])
    T = T + 1e-2 * T.flatten(1).norm(dim=1)[:, None, None, None] / n ** 1.5 * torch.randn(T.shape, generator=g, dtype=torch.float64)
    T = T.to(device=device, dtype=dtype)
    k = args.iters

    def ours_batched():
        fits, rec = cp_als_batched(T, R, n_iter=k, tol=0.0)
        return rec.info["errors"]

    def ours_loop():
        return [float((x.full() - T[b]).norm() / T[b].norm())
                for b in range(B) for x in [cp_als(T[b], R, n_iter=k, tol=0.0, line_search=False, residual="gram")[0]]]

    def tensorly_loop():
        out = []
        for b in range(B):
            cp = parafac(T[b], R, n_iter_max=k, tol=0.0, init="svd")
            out.append(float((tl.cp_to_tensor(cp) - T[b]).norm() / T[b].norm()))
        return out

    fns = {"tensornn cp_als_batched": ours_batched, "loop of tensornn cp_als": ours_loop, "loop of TensorLy parafac": tensorly_loop}
    print(f"{B} tensors of {n}x{n}x{n}, CP rank {R} + 1e-2 noise, {k} ALS sweeps each, {args.dtype}, {device}, "
          f"{torch.get_num_threads()} threads; load average " + "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    times, errs = {name: [] for name in fns}, {}
    for fn in fns.values(): fn() if B <= 50 else None          # warm-up on small batches only (the loops are slow)
    for _ in range(args.repeats):
        for name, fn in fns.items():
            sync(device); t0 = time.perf_counter()
            errs[name] = fn()
            sync(device); times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["tensornn cp_als_batched"])
    print(f"\n{'':28s} {'seconds':>9s} {'median rel. error':>18s} {'time / batched':>15s}")
    for name in fns:
        t = statistics.median(times[name])
        print(f"{name:28s} {t:9.3f} {statistics.median(errs[name]):18.3e} {t / base:15.1f}")


if __name__ == "__main__":
    main()
