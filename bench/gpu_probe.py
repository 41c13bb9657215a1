"""What the GPU check does not show: where cp_als waits for the GPU, how many kernels a sweep launches, and how the
MTTKRP's two GEMM orders compare on the device.

Usage: python bench/gpu_probe.py [--device cuda]
  1. host synchronisations per sweep of cp_als, by source line (torch.cuda.set_sync_debug_mode), and kernel launches
     per sweep for cp_als and TensorLy's parafac (torch.profiler);
  2. batched normal-equation solves (cholesky_solve against two triangular solves), as in cp_als_batched;
  3. MTTKRP of an end mode by one GEMM with the Khatri-Rao product, by a GEMM with one factor followed by a
     reduction with the other ("GEMM, then reduce"), and by torch.einsum, at 200^3 and 400^3 (100^3 and 200^3 with
     --device cpu); "tensornn.kernels.mttkrp" is the route the library takes on that device.

  python bench/gpu_probe.py --device cpu --mttkrp-only     # part 3 alone, on the CPU
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time
import traceback
import warnings

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import sync                       # noqa: E402
from tensornn import decompositions as D      # noqa: E402
from tensornn import kernels as K             # noqa: E402


def sync_sites(fn, device):
    "Source lines in tensornn that made the host wait for the device while `fn` ran, with counts."
    if device.type != "cuda": return collections.Counter()
    sites = collections.Counter()
    def record(message, category, filename, lineno, file=None, line=None):
        frames = [f for f in traceback.extract_stack()[:-1] if "tensornn" in f.filename and "bench" not in f.filename]
        sites[f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno} {frames[-1].line}" if frames else "outside tensornn"] += 1
    old = warnings.showwarning
    warnings.showwarning = record
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            fn(); sync(device)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        warnings.showwarning = old
    return sites


def kernel_launches(fn, device):
    "Number of device kernels and of host-side synchronising runtime calls while `fn` runs."
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        fn(); sync(device)
    ev = prof.events()
    kernels = sum(1 for e in ev if e.device_type == torch.autograd.DeviceType.CUDA)
    syncs = sum(1 for e in ev if e.name in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpyAsync"))
    ops = sum(1 for e in ev if e.name.startswith("aten::") and e.device_type == torch.autograd.DeviceType.CPU)
    return kernels, syncs, ops


def best(fn, device, repeats=20):
    fn(); sync(device)
    ts = []
    for _ in range(repeats):
        sync(device); t0 = time.perf_counter(); fn(); sync(device); ts.append(time.perf_counter() - t0)
    return min(ts)


def mttkrp_orders(n, R, device, dtype=torch.float32):
    g = torch.Generator(device="cpu").manual_seed(0)
    T = torch.randn(n, n, n, generator=g, dtype=dtype).to(device)
    A, B, C = (torch.randn(n, R, generator=g, dtype=dtype).to(device) for _ in range(3))
    ref = [K.mttkrp(T, [A, B, C], m) for m in range(3)]
    fns = {
        (0, "tensornn.kernels.mttkrp"): lambda: K.mttkrp(T, [A, B, C], 0),
        (0, "one GEMM with the Khatri-Rao"): lambda: T.reshape(n, -1) @ K.khatri_rao([B, C]),
        (0, "GEMM with C, reduce with B"): lambda: torch.einsum("ijr,jr->ir", (T.reshape(n * n, n) @ C).reshape(n, n, R), B),
        (0, "torch.einsum"): lambda: torch.einsum("ijk,jr,kr->ir", T, B, C),
        (0, "split over j: bmm, then sum"): lambda: torch.bmm(T.transpose(0, 1), K.khatri_rao([B, C]).reshape(n, n, R)).sum(0),
        (2, "tensornn.kernels.mttkrp"): lambda: K.mttkrp(T, [A, B, C], 2),
        (2, "one GEMM with the Khatri-Rao"): lambda: T.reshape(-1, n).mT @ K.khatri_rao([A, B]),
        (2, "one GEMM, tensornn.kernels.gemm"): lambda: K.gemm(T.reshape(-1, n).mT, K.khatri_rao([A, B])),
        (2, "GEMM with A, reduce with B"): lambda: torch.einsum("rjk,jr->kr", (A.mT @ T.reshape(n, n * n)).reshape(R, n, n), B),
        (2, "gemm with A, bmm with B"): lambda: torch.bmm(B.mT.unsqueeze(1), K.gemm(A.mT, T.reshape(n, n * n)).reshape(R, n, n)).squeeze(1).mT,
        (2, "torch.einsum"): lambda: torch.einsum("ijk,ir,jr->kr", T, A, B),
        (1, "tensornn.kernels.mttkrp"): lambda: K.mttkrp(T, [A, B, C], 1),
        (1, "torch.einsum"): lambda: torch.einsum("ijk,ir,kr->jr", T, A, C),
    }
    flops = 2 * n ** 3 * R
    for (mode, name), fn in fns.items():
        out = fn()
        err = float((out - ref[mode]).norm() / ref[mode].norm())
        t = best(fn, device)
        print(f"  {n:4d} {R:4d} {mode:4d}  {name:32s} {1e3 * t:8.3f} ms {flops / t / 1e9:9.0f} GFLOP/s "
              f"{T.numel() * T.element_size() / t / 1e9:6.0f} GB/s of T   rel. diff {err:.1e}")


def batched_solves(B, R, I, device, dtype=torch.float32):
    "Batched M V^-1 for B Gram matrices V (R x R) and right-hand sides M (I x R): cholesky_solve vs two triangular solves."
    g = torch.Generator(device="cpu").manual_seed(0)
    A = torch.randn(B, 3 * R, R, generator=g, dtype=dtype).to(device)
    V, M = A.mT @ A, torch.randn(B, I, R, generator=g, dtype=dtype).to(device)
    L = torch.linalg.cholesky(V)
    fns = {"cholesky_solve": lambda: torch.cholesky_solve(M.mT, L).mT,
           "two solve_triangular": lambda: torch.linalg.solve_triangular(
               L, torch.linalg.solve_triangular(L.mT, M, upper=True, left=False), upper=False, left=False)}
    ref = fns["cholesky_solve"]()
    for name, fn in fns.items():
        err = float((fn() - ref).norm() / ref.norm())
        print(f"  B={B:5d} R={R:3d} I={I:4d}  {name:22s} {1e3 * best(fn, device):8.3f} ms   rel. diff {err:.1e}")


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--mttkrp-only", action="store_true", help="only part 3, the MTTKRP orders")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, "
          f"{torch.get_num_threads()} CPU threads")
    if not args.mttkrp_only: probe_sweeps_and_solves(device)
    sizes = ((200, 16), (400, 10), (400, 32)) if device.type == "cuda" else ((100, 16), (200, 10), (200, 32))
    print("\nMTTKRP orders (best of 20), float32:")
    for n, R in sizes:
        mttkrp_orders(n, R, device)


def probe_sweeps_and_solves(device):
    "Parts 1 and 2: synchronisations and launches per cp_als sweep, against TensorLy's; batched solves."
    g = torch.Generator(device="cpu").manual_seed(0)
    for n, R in ((200, 16), (400, 32)):
        T = torch.randn(n, n, n, generator=g).to(device)
        for label, kw in (("residual='gram'", dict(residual="gram", line_search=False)), ("defaults", {})):
            run = lambda k: D.cp_als(T, R, n_iter=k, tol=0.0, init="random", seed=0, **kw)
            run(2); sync(device)
            k1, s1, o1 = kernel_launches(lambda: run(2), device)
            k2, s2, o2 = kernel_launches(lambda: run(6), device)
            sites = sync_sites(lambda: run(6), device)
            print(f"\ncp_als {n}^3 R={R} {label}: per sweep {(k2 - k1) / 4:.1f} kernels, {(s2 - s1) / 4:.1f} synchronising "
                  f"calls, {(o2 - o1) / 4:.1f} aten ops; 6 sweeps: {k2} kernels, {s2} synchronising calls")
            for site, c in sites.most_common(12): print(f"    {c:4d}  {site}")
        try:
            import tensorly as tl
            from tensorly.decomposition import parafac
            tl.set_backend("pytorch")
            runtl = lambda k: parafac(T, R, n_iter_max=k, tol=0.0, init="random", random_state=0)
            runtl(2)
            k1, s1, o1 = kernel_launches(lambda: runtl(2), device)
            k2, s2, o2 = kernel_launches(lambda: runtl(6), device)
            print(f"TensorLy parafac {n}^3 R={R}: per sweep {(k2 - k1) / 4:.1f} kernels, {(s2 - s1) / 4:.1f} synchronising "
                  f"calls, {(o2 - o1) / 4:.1f} aten ops")
        except ImportError as e:
            print(f"TensorLy unavailable: {e}")
    print("\nBatched solves of the normal equations (best of 20), float32:")
    for B, R, I in ((200, 5, 10), (2000, 5, 10), (200, 16, 64)):
        batched_solves(B, R, I, device)


if __name__ == "__main__":
    main()
