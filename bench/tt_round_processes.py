"""TT rounding against teneva, one library per process.

    python bench/tt_round_processes.py [--rounds 7] [--calls 61] [--ranks 10 20] [--threads N]

bench/hosvd_tt.py interleaves tensornn's `tt_round` and teneva's `truncate` in one process. There NumPy's BLAS threads
(teneva) and torch's OpenMP threads slow each other down on a small machine, so its rounding rows mislead. Here each
measurement is a fresh process that imports one library only: it loads the train from a file, rounds it --calls times
after a warm-up and prints the median. The train is hosvd_tt.py's: a rank-r train plus 1% of another (12 modes of size
16, stored TT rank 2r), rounded to rank r. The processes alternate between the two libraries, --rounds times for each
rank and dtype; the table gives the median and the range of the per-process medians, and their ratio. The relative
error of both results is printed, measured from the difference of the trains. CPU only: teneva runs on NumPy.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def load_cores(path: str) -> list:
    "The NumPy cores saved by `make_train` or `child`, in order."
    import numpy as np
    return [a for _, a in sorted(np.load(path).items(), key=lambda kv: int(kv[0][1:]))]


def child(lib: str, path: str, rank: int, calls: int) -> None:
    "Round the train in `path` with one library; print the median time in ms and save the result beside it."
    import numpy as np
    cores = load_cores(path)
    if lib == "tensornn":
        import torch
        from tensornn.decompositions import tt_round
        from tensornn.formats import TTTensor
        train = TTTensor([torch.from_numpy(c) for c in cores])
        fn = lambda: tt_round(train, rank=rank)
        result = lambda out: [c.numpy() for c in out.cores]
    else:
        import teneva
        fn = lambda: teneva.truncate(cores, 1e-14, rank)
        result = lambda out: out
    for _ in range(10): out = fn()
    times = []
    for _ in range(calls):
        t = time.perf_counter(); out = fn(); times.append(time.perf_counter() - t)
    np.savez(f"{path}.{lib}.npz", **{f"c{k}": c for k, c in enumerate(result(out))})
    print(1e3 * statistics.median(times))


def make_train(rank: int, dtype, path: str) -> None:
    import numpy as np
    from hosvd_tt import rounding_train
    np.savez(path, **{f"c{k}": c.to(dtype).numpy() for k, c in enumerate(rounding_train(rank))})


def relative_error(path: str, lib: str) -> float:
    "||rounded - train|| / ||train|| in float64, from the TT of the difference (no cancellation)."
    import torch
    from hosvd_tt import tt_sum
    from tensornn.formats import TTTensor
    load = lambda p: [torch.from_numpy(a).double() for a in load_cores(p)]
    train, rounded = load(path), load(f"{path}.{lib}.npz")
    diff = TTTensor(tt_sum(train, [-rounded[0]] + rounded[1:]))
    return float(diff.norm() / TTTensor(train).norm())


def run_child(lib: str, path: str, rank: int, calls: int, env: dict) -> float:
    out = subprocess.run([sys.executable, __file__, "--child", lib, path, str(rank), str(calls)], env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7, help="processes per library, rank and dtype")
    p.add_argument("--calls", type=int, default=61, help="timed calls per process (after 10 untimed)")
    p.add_argument("--ranks", type=int, nargs="+", default=[10, 20])
    p.add_argument("--threads", type=int, default=None, help="OMP/MKL/OpenBLAS threads of the children")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        lib, path, rank, calls = a.child
        return child(lib, path, int(rank), int(calls))
    import torch
    import teneva
    import tensornn
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(__file__),
                                                                     os.environ.get("PYTHONPATH")])))
    if a.threads:
        env.update({v: str(a.threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    print(f"TT rounding, one library per process: a rank-r train plus 1% of another (12 modes of size 16, TT rank 2r) "
          f"rounded to rank r.\ntensornn {tensornn.__version__} (torch {torch.__version__}), teneva {teneva.__version__}; "
          f"{a.rounds} processes each, alternating; per process the median of {a.calls} calls; CPU, "
          f"{a.threads or 'default'} threads, {os.cpu_count()} cores.")
    print(f"\n{'rank':>4s} {'dtype':>8s} {'library':>9s} {'median ms':>10s} {'range of the processes':>24s} "
          f"{'rel. error':>14s} {'time / tensornn':>16s}")
    with tempfile.TemporaryDirectory() as tmp:
        for rank in a.ranks:
            for dtype in (torch.float32, torch.float64):
                path = os.path.join(tmp, f"train_{rank}_{dtype}.npz".replace("torch.", ""))
                make_train(rank, dtype, path)
                times = {"tensornn": [], "teneva": []}
                for r in range(a.rounds):
                    order = list(times) if r % 2 == 0 else list(times)[::-1]
                    for lib in order: times[lib].append(run_child(lib, path, rank, a.calls, env))
                base = statistics.median(times["tensornn"])
                for lib, ts in times.items():
                    med = statistics.median(ts)
                    print(f"{rank:4d} {str(dtype)[6:]:>8s} {lib:>9s} {med:10.2f} {min(ts):11.2f} to {max(ts):8.2f} "
                          f"{relative_error(path, lib):14.8e} {med / base:16.2f}")


if __name__ == "__main__":
    main()
