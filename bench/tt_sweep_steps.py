"""The TT sweep's thin-slab route against a batched GEMM at every step, forward and forward+backward, with peaks.

Usage: python bench/tt_sweep_steps.py [--device cpu|cuda] [--dtype float32|float64] [--set fit|check|quick|all]

Chapter 02's sweep runs a step whose slabs are thin (`_slabs_are_thin`) and whose core needs a gradient as one GEMM
between two transposed copies, instead of a batched GEMM on the expanded core, whose gradient writes one core-sized
product per slab. This script times `TTLinear(plan="sweep")` both ways on the same layer: "batched" switches the
thin-slab route off (every step a batched GEMM, the sweep before the route existed), "thin" is the library's rule.
The two are interleaved round by round in a shuffled order (bench/common.py), each pass timed on its own, medians
of 21 rounds, on the shapes of `bench/tt_plans.py` at batches 1 to 64 (the route is never taken at larger batches
there; `--set all` is fit and check together). Peak MiB is the memory one forward+backward call adds
(bench/common.py). The last column counts the steps (of those with more than one slab) that take the route.
"""
import argparse
import math
import statistics

import torch

import tensornn.compression as comp
from tensornn.compression import TTLinear

from common import median_times, peak_mib
from tt_plans import SETS


def thin_steps(layer: TTLinear, B: int) -> tuple:
    "How many of the sweep's steps with more than one slab are thin at batch B, and how many there are."
    m, n, r = layer._sweep_modes()
    steps = range(1, len(m))                                  # step 0 has one slab: always one GEMM
    return sum(comp._slabs_are_thin(r[k] * m[k], n[k] * r[k + 1], B * math.prod(m[k + 1:])) for k in steps), len(steps)


def calls(layer: TTLinear, x: torch.Tensor) -> dict:
    "Forward (no_grad) and forward+backward calls of the layer, each with the route switched off and on."
    original = comp._slabs_are_thin
    def routed(thin: bool, fn):
        def call():
            comp._slabs_are_thin = original if thin else (lambda a, b, S: False)
            try: fn()
            finally: comp._slabs_are_thin = original
        return call
    def fwd():
        with torch.no_grad(): layer(x)
    xg = x.clone().requires_grad_()
    def fwd_bwd(): torch.autograd.grad(layer(xg).sum(), [xg, *layer.cores])
    return {(kind, thin): routed(thin, fn) for kind, fn in (("fwd", fwd), ("fwd+bwd", fwd_bwd)) for thin in (False, True)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--set", default="quick", choices=sorted(SETS) + ["all"])
    args = ap.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if device.type == "cuda" and not torch.cuda.is_available(): raise SystemExit("--device cuda: CUDA is not available")
    shapes = SETS["fit"] + SETS["check"] if args.set == "all" else SETS[args.set]
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else f", {torch.get_num_threads()} threads")
          + f", dtype {dtype}; set '{args.set}'; medians of 21 interleaved rounds, each pass timed on its own")
    print(f"{'layer':>34} {'rank':>4} {'batch':>5} {'pass':>8} {'batched ms':>10} {'thin ms':>9} {'thin/batched':>12}"
          f" {'peak MiB (fwd+bwd): batched':>28} {'thin':>6}  thin steps")
    ratios = {"fwd": [], "fwd+bwd": []}
    for im, om, rank in shapes:
        layer = TTLinear(math.prod(im), math.prod(om), rank, in_modes=im, out_modes=om, seed=0, plan="sweep",
                         dtype=dtype, device=device)
        for B in (1, 4, 16, 64):
            x = torch.randn(B, layer.in_features, dtype=dtype, device=device)
            fns = calls(layer, x)
            times = {}
            for kind in ("fwd", "fwd+bwd"):
                times.update(median_times({key: fn for key, fn in fns.items() if key[0] == kind}, device, 21)[0])
            peaks = {thin: peak_mib(fns[("fwd+bwd", thin)], device) for thin in (False, True)}
            k, of = thin_steps(layer, B)
            for kind in ("fwd", "fwd+bwd"):
                old, new = times[(kind, False)], times[(kind, True)]
                ratios[kind].append(new / old)
                peak = f"{peaks[False]:>28.2f} {peaks[True]:>6.2f}" if kind == "fwd+bwd" else " " * 35
                print(f"{str(im) + '->' + str(om):>34} {rank:>4} {B:>5} {kind:>8} {old * 1e3:>10.3f} {new * 1e3:>9.3f}"
                      f" {new / old:>12.2f} {peak}  {k} of {of}", flush=True)
    print("\nthin/batched: time with the library's rule over time with a batched GEMM at every step (below 1: faster).")
    for kind, rs in ratios.items():
        print(f"  {kind:>8}: geometric mean {math.exp(statistics.fmean(map(math.log, rs))):.3f}, "
              f"range {min(rs):.2f}-{max(rs):.2f}, rows above 1.10: {sum(r > 1.10 for r in rs)} of {len(rs)}")


if __name__ == "__main__":
    main()
