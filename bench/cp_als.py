"""CP-ALS and MTTKRP: tensornn against TensorLy (PyTorch backend), side by side in one process.

    python bench/cp_als.py [--size 200] [--rank 16] [--iters 20] [--device cpu|cuda] [--repeats 3] [--dtype float32]
                           [--seed 1] [--threads N]

Both libraries start from the same initial factors (leading left singular vectors of each unfolding) and run
exactly `--iters` ALS sweeps (tol=0, so neither stops early); the time per iteration is the best of `--repeats`
runs, total / iterations. Rows: TensorLy without and with per-iteration errors; tensornn with the same cheap
error formula (`residual="gram"`), with and without extrapolation, and with its defaults (which switch to the exact
residual below 10 sqrt(eps) and keep it from then on, an extra pass over the data that TensorLy never pays and
where its errors are noise). MTTKRP is timed for each mode at rank 10 and at `--rank`, and its rate is compared with
this machine's matrix-multiply peaks in the same dtype, measured right before and after each row: torch.matmul's
(the BLAS) and tensornn.kernels.gemm's (oneDNN for large float32 CPU products, where the build has it; chapter 00
explains the route), and with the time of one read of T. Each MTTKRP is timed warm (right after a call of its own)
and cold (right after writing a buffer larger than the caches), for both libraries alike.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import time

import torch

import tensorly as tl
from tensorly.decomposition import parafac

import tensornn
from tensornn import kernels as K
from tensornn.formats import CPTensor
from tensornn.decompositions import cp_als

from common import peaks_mib, sync


def best_times(fns: dict, device, repeats, warmups: dict | None = None):
    """Best wall time of each `fns[name]()` over `repeats` rounds, after one untimed warm-up call each.

    The candidates are interleaved (round-robin within every round), so a change in machine load hits them all
    alike. Returns `({name: seconds}, {name: result of the last call})`."""
    warmups = warmups or {}
    for name, fn in fns.items():
        warmups.get(name, fn)()
    sync(device)
    best, out = {name: math.inf for name in fns}, {}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            out[name] = fn()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best, out


def warm_and_cold_times(fns: dict, device, repeats, flush):
    """Best wall time of each `fns[name]()` over `repeats` rounds, warm and cold, the candidates interleaved.

    Warm: right after an untimed call of the same candidate, so its data sit wherever its own last call left them
    (as in an ALS sweep, where one MTTKRP follows another over the same T). Cold: right after `flush()` has written a
    buffer larger than the caches. Returns `({name: warm seconds}, {name: cold seconds}, {name: last result})`."""
    warm, cold, out = {name: math.inf for name in fns}, {name: math.inf for name in fns}, {}
    def timed(fn):
        sync(device); t0 = time.perf_counter(); result = fn(); sync(device)
        return time.perf_counter() - t0, result
    for _ in range(repeats):
        for name, fn in fns.items():
            fn()
            t, out[name] = timed(fn)
            warm[name] = min(warm[name], t)
            flush()
            cold[name] = min(cold[name], timed(fn)[0])
    return warm, cold, out


def matmul_peak(n, dtype, device, repeats, fn=torch.matmul):
    "Measured GEMM rate (GFLOP/s) of an n x n by n x n product by `fn` (torch.matmul, or tensornn's gemm)."
    g = torch.Generator(device="cpu").manual_seed(0)
    A = torch.randn(n, n, generator=g, dtype=dtype).to(device)
    B = torch.randn(n, n, generator=g, dtype=dtype).to(device)
    t, _ = best_times({"mm": lambda: fn(A, B)}, device, repeats)
    return 2 * n**3 / t["mm"] / 1e9


def make_problem(size, rank, noise, dtype, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    F = [torch.randn(size, rank, generator=g, dtype=dtype) for _ in range(3)]
    T = K.cp_full(torch.ones(rank, dtype=dtype), F)
    T = T + noise * T.norm() / math.sqrt(T.numel()) * torch.randn(T.shape, generator=g, dtype=dtype)
    return T.to(device)


def svd_init(T, rank):
    "Leading left singular vectors of each unfolding (the 'svd' init both libraries use), unit weights."
    factors = []
    for mode in range(T.ndim):
        M = K.unfold(T, mode)
        U = torch.linalg.eigh(M @ M.T).eigenvectors.flip(-1)[:, :rank]   # = left singular vectors, cheaper
        factors.append(U.contiguous())
    return torch.ones(rank, dtype=T.dtype, device=T.device), factors


def rel_error(full, T):
    return float((full - T).norm() / T.norm())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=200, help="the tensor is size x size x size")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--iters", type=int, default=20, help="ALS sweeps per run (both libraries)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--repeats", type=int, default=3, help="timed runs; the best is reported")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--noise", type=float, default=1e-3, help="relative Gaussian noise added to the rank-R tensor")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the test tensor (with seed 1, ALS reaches the noise level within 20 iterations; "
                        "other instances can sit in a swamp for longer, the same for both libraries)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available on this machine")
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    I = J = Kk = args.size
    R = args.rank

    tl.set_backend("pytorch")
    print(f"tensornn {tensornn.__version__} | tensorly {tl.__version__} (backend {tl.get_backend()}) | "
          f"torch {torch.__version__} | {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads" + (f" | {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""))
    print(f"problem: {I}x{J}x{Kk} tensor, CP rank {R} + {args.noise:g} relative noise, {args.dtype}, {device}; "
          f"{args.iters} ALS iterations, best of {args.repeats}, seed {args.seed}")
    if hasattr(os, "getloadavg"):
        print("load average before timing: {:.2f} {:.2f} {:.2f} (timings on a busy machine are noisy)".format(*os.getloadavg()))

    T = make_problem(args.size, R, args.noise, dtype, device, seed=args.seed)
    w0, F0 = svd_init(T, R)

    def fresh_init():
        return w0.clone(), [A.clone() for A in F0]

    # ---------------------------------------------------------------- CP-ALS, per iteration
    def run_tl(iters, errors, linesearch=False):
        def f():
            w, F = fresh_init()
            return parafac(T, R, n_iter_max=iters, init=(w, F), tol=0, linesearch=linesearch, return_errors=errors)
        return f

    def run_ours(iters, line_search, residual):
        def f():
            w, F = fresh_init()
            return cp_als(T, R, n_iter=iters, tol=0.0, init=CPTensor(w, F), line_search=line_search, residual=residual)
        return f

    rows = {  # name: (label, runner)
        "tl": ("TensorLy parafac, no error tracking", lambda n: run_tl(n, False)),
        "tl_err": ("TensorLy parafac, return_errors=True", lambda n: run_tl(n, True)),
        "tl_ls": ("  same, linesearch=True", lambda n: run_tl(n, True, linesearch=True)),
        "gram": ('tensornn cp_als, residual="gram"', lambda n: run_ours(n, False, "gram")),
        "gram_ls": ('  same, line_search=True', lambda n: run_ours(n, True, "gram")),
        "auto": ('tensornn cp_als, defaults (auto)', lambda n: run_ours(n, True, "auto")),
    }
    # warm up with short runs (allocator, BLAS threads, CUDA kernels), then time the full runs, interleaved
    t, out = best_times({k: run(args.iters) for k, (_, run) in rows.items()}, device, args.repeats,
                        warmups={k: run(4) for k, (_, run) in rows.items()})
    mem = peaks_mib({k: run(args.iters) for k, (_, run) in rows.items()}, device)
    n = args.iters
    # the TensorLy run with the same options: errors every sweep, and line search where ours searches
    peer = {"gram": "tl_err", "gram_ls": "tl_ls", "auto": "tl_ls"}
    print(f"\nCP-ALS (same init, tol=0, {n} sweeps)     ms / iteration   peak MiB   final rel. error   "
          f"TensorLy (no errors) / this   TensorLy, same options / this")
    for k, (label, _) in rows.items():
        res = out[k]
        if k.startswith("tl"):
            err = rel_error(tl.cp_to_tensor(res[0] if isinstance(res, tuple) else res), T)
        else:
            cp, rec = res
            if rec.n_iter != n: print(f"warning: {label} ran {rec.n_iter} iterations, not {n}")
            err = rel_error(cp.full(), T)
        same = f"{t[peer[k]] / t[k]:29.2f}" if k in peer else ""
        print(f"  {label:38s} {1e3 * t[k] / n:12.2f}   {mem[k]:8.1f}   {err:16.3e}   {t['tl'] / t[k]:26.2f}{same}")
    floor = 10 * math.sqrt(torch.finfo(dtype).eps)
    print(f"  (peak MiB: memory above what was resident before one run, result included; the input is "
          f"{T.numel() * T.element_size() / 2 ** 20:.0f} MiB)")
    print(f"  (TensorLy's per-iteration error and residual=\"gram\" use the same cheap formula; the default switches to\n"
          f"   the exact residual, one more GEMM-sized pass per sweep, once the error is below {floor:.1e} in {args.dtype},\n"
          f"   where the cheap formula is rounding noise. TensorLy's line search tries a jump every other sweep from\n"
          f"   the seventh, ours every sweep from the third while the error is above that floor.)")

    # ---------------------------------------------------------------- MTTKRP, per mode
    peak_n = 8192 if device.type == "cuda" else 2048     # a GPU needs a large product to reach its peak
    peak_rounds = max(5, args.repeats)
    peaks = {name: matmul_peak(peak_n, getattr(torch, name), device, peak_rounds) for name in ("float32", "float64")}
    gemm_peak = matmul_peak(peak_n, dtype, device, peak_rounds, fn=K.gemm)
    print(f"\nmatmul peak ({peak_n}x{peak_n}, best of {peak_rounds}): torch.matmul "
          + ", ".join(f"{name} {p:.1f}" for name, p in peaks.items())
          + f" GFLOP/s; tensornn.kernels.gemm {args.dtype} {gemm_peak:.1f} GFLOP/s"
          + (" (oneDNN route)" if K._wants_onednn(torch.ones(256, 256, dtype=dtype), torch.ones(256, 256, dtype=dtype))
             and device.type == "cpu" else " (torch.matmul route)"))
    t_bytes = T.numel() * T.element_size()
    flush_mib = 256
    print(f"MTTKRP, {args.dtype}: 2*I*J*K*R flops for the dominant GEMM. tensornn and TensorLy are interleaved in each\n"
          f"  round, each timed warm (right after an untimed call of its own, as in an ALS sweep, where MTTKRPs follow\n"
          f"  each other over the same T) and cold (right after writing {flush_mib} MiB, more than the caches hold).\n"
          f"  Right before and right after each row's rounds, {peak_rounds} rounds time the {peak_n}x{peak_n} product by\n"
          f"  torch.matmul and by tensornn.kernels.gemm, and the best of those is the row's peak, so a drift of the machine's\n"
          f"  speed between rows does not enter the ratios; then, alone and repeated, a sum over T (reading T once, from wherever\n"
          f"  the caches keep it: a bound no MTTKRP beats, the memory bound at low rank). 'of matmul' is against\n"
          f"  torch.matmul's rate, 'of best' against the faster of the two products, 'of read' the sum's time over the\n"
          f"  warm MTTKRP's (1.0 = as fast as reading T once), 'T GB/s' T's bytes over the warm MTTKRP's time; the\n"
          f"  columns from the first 'cold ms' on are the cold calls' (tensornn, its rate of matmul, TensorLy and the\n"
          f"  ratio TensorLy / tensornn). (Inside the rounds, the large products slowed whatever ran after them: calls\n"
          f"  at 50^3 took 4x as long.)")
    print(f"  rank  mode   tensornn ms   GFLOP/s   of matmul   of best   of read   T GB/s   cold ms   of matmul   "
          f"TensorLy ms   TensorLy / tensornn   cold ms   cold ratio   (best of {3 * args.repeats})")
    g = torch.Generator(device="cpu").manual_seed(args.seed)
    gp = torch.Generator(device="cpu").manual_seed(0)
    PA, PB = (torch.randn(peak_n, peak_n, generator=gp, dtype=dtype).to(device) for _ in range(2))
    products = {"mm": lambda: torch.matmul(PA, PB), "gemm": lambda: K.gemm(PA, PB)}
    flush_buffer = torch.empty(flush_mib * 2 ** 18, device=device)       # float32 entries
    flush = lambda: flush_buffer.fill_(1.0)
    for r in sorted({10, R}):
        F = [torch.randn(args.size, r, generator=g, dtype=dtype).to(device) for _ in range(3)]
        w = torch.ones(r, dtype=dtype, device=device)
        flops = 2 * I * J * Kk * r
        for mode in range(3):
            before, _ = best_times(products, device, peak_rounds)
            t_read = best_times({"read": lambda: T.sum()}, device, 3 * args.repeats)[0]["read"]
            t, cold, out = warm_and_cold_times({"ours": lambda m=mode: K.mttkrp(T, F, m),
                                                "tl": lambda m=mode: tl.tenalg.unfolding_dot_khatri_rao(T, (w, F), m)},
                                               device, 3 * args.repeats, flush)    # cheap: more rounds, steadier minimum
            after, _ = best_times(products, device, peak_rounds)
            ref = {k: min(before[k], after[k]) for k in products}
            t_k, t_t = t["ours"], t["tl"]
            diff = float((out["ours"] - out["tl"]).norm() / out["tl"].norm())
            rate, mm_rate = flops / t_k / 1e9, 2 * peak_n ** 3 / ref["mm"] / 1e9
            best_rate = max(mm_rate, 2 * peak_n ** 3 / ref["gemm"] / 1e9)
            cold_rate = flops / cold["ours"] / 1e9
            print(f"  {r:4d}  {mode:4d}   {1e3 * t_k:11.2f}   {rate:7.1f}   {rate / mm_rate:9.1%}   {rate / best_rate:7.1%}"
                  f"   {t_read / t_k:7.2f}   {t_bytes / t_k / 1e9:6.0f}   {1e3 * cold['ours']:7.2f}   {cold_rate / mm_rate:9.1%}   "
                  f"{1e3 * t_t:11.2f}   {t_t / t_k:19.2f}   {1e3 * cold['tl']:7.2f}   {cold['tl'] / cold['ours']:10.2f}"
                  f"   (rel. diff {diff:.1e})")


if __name__ == "__main__":
    main()
