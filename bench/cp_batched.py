"""Many small problems: `cp_als_batched`, `hosvd_batched` and `tt_svd_batched` against Python loops and tntorch.

CP: `cp_als_batched` against a loop of `cp_als`, a loop of TensorLy's `parafac` and tntorch's batched CP-ALS
(`tntorch.Tensor(T, ranks_cp=R, batch=True)`, where tntorch is installed). HOSVD and TT-SVD of the same batch:
the batched functions against a loop of the single-tensor ones and tntorch's batched Tucker and TT.

    python bench/cp_batched.py [--batch 1000] [--size 10] [--rank 5] [--iters 50] [--repeats 3] [--dtype float32]
                               [--device cpu|cuda] [--threads N]

A batch of `--batch` tensors of shape size x size x size, each of CP rank `--rank` plus 1e-2 relative noise. Every
contender runs exactly `--iters` plain ALS sweeps (tol=0, no line search), so the work is equal; the median of
`--repeats` interleaved rounds is reported with the median final relative error, so speed bought with accuracy shows, and
the peak memory of one more call of each batched contender (`common.peak_mib`; a loop would take as long again).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

try:
    import tntorch as tn
except ImportError:
    tn = None

import tensorly as tl
from tensorly.decomposition import parafac

from tensornn.decompositions import cp_als, cp_als_batched, hosvd, hosvd_batched, tt_svd, tt_svd_batched
from tensornn.formats import random_cp

from common import median_times, peaks_mib, sync


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

    def tntorch_batched():
        x = tn.Tensor(T, ranks_cp=R, batch=True, max_iter=k, tol=0, device=T.device)   # its default device is the CPU
        return ((x.torch() - T).flatten(1).norm(dim=1) / T.flatten(1).norm(dim=1)).tolist()

    fns = {"tensornn cp_als_batched": ours_batched, "loop of tensornn cp_als": ours_loop, "loop of TensorLy parafac": tensorly_loop}
    if tn is not None: fns["tntorch batched CP-ALS"] = tntorch_batched
    print(f"{B} tensors of {n}x{n}x{n}, CP rank {R} + 1e-2 noise, {k} ALS sweeps each, {args.dtype}, {device}, "
          f"{torch.get_num_threads()} threads; load average " + "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    times, errs = {name: [] for name in fns}, {}
    for name, fn in fns.items():                  # warm-up (the device's libraries load on first use); loops only on small batches
        if B <= 50 or "loop" not in name: fn()
    sync(device)
    for _ in range(args.repeats):
        for name, fn in fns.items():
            sync(device); t0 = time.perf_counter()
            errs[name] = fn()
            sync(device); times[name].append(time.perf_counter() - t0)
    mem = peaks_mib({name: fn for name, fn in fns.items() if "loop" not in name}, device)   # a loop's peak is one member's
    base = statistics.median(times["tensornn cp_als_batched"])
    print(f"\n{'':28s} {'seconds':>9s} {'peak MiB':>9s} {'median rel. error':>18s} {'time / batched':>15s}")
    for name in fns:
        t = statistics.median(times[name])
        peak = f"{mem[name]:9.1f}" if name in mem else f"{'-':>9s}"
        print(f"{name:28s} {t:9.3f} {peak} {statistics.median(errs[name]):18.3e} {t / base:15.1f}")
    svd_tables(T, R, device, args.repeats)


def rel_errors(fulls, T):
    return [float((F - T[b]).norm() / T[b].norm()) for b, F in enumerate(fulls)]


def svd_tables(T, r, device, repeats):
    "HOSVD (multilinear rank r) and TT-SVD (TT rank r) of the whole batch: batched, a loop, tntorch's batch mode."
    for title, batched, single, tn_kw in (
            ("HOSVD", lambda: hosvd_batched(T, r), lambda X: hosvd(X, r), dict(ranks_tucker=r)),
            ("TT-SVD", lambda: tt_svd_batched(T, rank=r), lambda X: tt_svd(X, rank=r), dict(ranks_tt=r))):
        fns = {f"tensornn {title} batched": batched, f"loop of tensornn {title}": lambda: [single(X) for X in T]}
        if tn is not None: fns[f"tntorch batched {title}"] = lambda: tn.Tensor(T, batch=True, **tn_kw)
        t, out = median_times(fns, device, repeats)
        mem = peaks_mib(fns, device)
        base = t[next(iter(fns))]
        print(f"\n{title + f' of the batch, rank {r}':28s} {'ms':>9s} {'peak MiB':>9s} {'median rel. error':>18s} {'time / batched':>15s}")
        for name, X in out.items():
            fulls = X.torch() if tn is not None and isinstance(X, tn.Tensor) else [x.full() for x in X]
            err = statistics.median(rel_errors(fulls, T))
            print(f"{name:28s} {1e3 * t[name]:9.1f} {mem[name]:9.1f} {err:18.3e} {t[name] / base:15.1f}")


if __name__ == "__main__":
    main()
