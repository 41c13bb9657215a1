"""The TT sweep in blocks of rows against the whole batch at once, forward and forward+backward, with peaks (CPU).

Usage: python bench/tt_sweep_blocks.py [--dtype float32|float64] [--set fit|check|quick|all]

On the CPU, chapter 02's `TTLinear` runs the sweep on blocks of rows once the largest tensor of a sweep over the
whole batch would reach 64 MiB (`_sweep_block_rows`: the largest power of two of rows whose tensors stay under
8 MiB). This script times `TTLinear(plan="sweep")` both ways on the same layer and input: "whole" switches the
blocks off (the sweep before blocks existed), "blocks" is the library's rule. The two are interleaved round by round
in a shuffled order (bench/common.py), each pass timed on its own, medians of 5 to 21 rounds (fewer for the slowest
rows), on the shapes of `bench/tt_plans.py` at batches 256 to 4096 where the rule makes blocks (`--set all` is fit
and check together). Peak MiB is the memory one call adds, measured after the timing (bench/common.py), forward under no_grad and
forward+backward. On a GPU the sweep never runs in blocks, so there is no `--device`.
"""
import argparse
import math
import statistics
import time

import torch

import tensornn.compression as comp
from tensornn.compression import TTLinear

from common import median_times, peaks_mib
from tt_plans import SETS


def calls(layer: TTLinear, x: torch.Tensor) -> dict:
    "Forward (no_grad) and forward+backward calls of the layer, each on the whole batch and in the library's blocks."
    def blocked(blocks: bool, fn):
        def call():
            if not blocks: layer._sweep_rows = lambda B: B          # an instance attribute hides the method
            try: fn()
            finally: layer.__dict__.pop("_sweep_rows", None)
        return call
    def fwd():
        with torch.no_grad(): layer(x)
    xg = x.clone().requires_grad_()
    def fwd_bwd(): torch.autograd.grad(layer(xg).sum(), [xg, *layer.cores])
    return {(kind, blocks): blocked(blocks, fn) for kind, fn in (("fwd", fwd), ("fwd+bwd", fwd_bwd)) for blocks in (False, True)}


def rounds(fns: list) -> int:
    "Rounds for about half a second of each contender's calls, 5 to 21."
    for fn in fns: fn()
    t0 = time.perf_counter()
    for fn in fns: fn()
    return max(5, min(21, int(0.5 / max(time.perf_counter() - t0, 1e-9))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--set", default="quick", choices=sorted(SETS) + ["all"])
    args = ap.parse_args()
    device, dtype = torch.device("cpu"), getattr(torch, args.dtype)
    shapes = SETS["fit"] + SETS["check"] if args.set == "all" else SETS[args.set]
    item = torch.empty((), dtype=dtype).element_size()
    print(f"torch {torch.__version__}, device cpu, {torch.get_num_threads()} threads, dtype {dtype}; set '{args.set}'; "
          "medians of 5-21 interleaved rounds, each pass timed on its own")
    print(f"{'layer':>34} {'rank':>4} {'batch':>5} {'rows':>5} {'pass':>8} {'whole ms':>10} {'blocks ms':>10}"
          f" {'blocks/whole':>12} {'peak MiB: whole':>16} {'blocks':>7}")
    ratios = {"fwd": [], "fwd+bwd": []}
    for im, om, rank in shapes:
        layer = TTLinear(math.prod(im), math.prod(om), rank, in_modes=im, out_modes=om, seed=0, plan="sweep", dtype=dtype)
        for B in (256, 1024, 4096):
            rows = layer._sweep_rows(B)
            if rows == B or B * max(layer.in_features, layer.out_features) * max(layer.rank) * item > 2 ** 33 // 4: continue
            x = torch.randn(B, layer.in_features, dtype=dtype)
            fns = calls(layer, x)
            times = {}
            for kind in ("fwd", "fwd+bwd"):
                pair = {key: fn for key, fn in fns.items() if key[0] == kind}
                times.update(median_times(pair, device, rounds(list(pair.values())))[0])
            peaks = peaks_mib(fns, device)                 # after the timing, as in the other benches
            for kind in ("fwd", "fwd+bwd"):
                old, new = times[(kind, False)], times[(kind, True)]
                ratios[kind].append(new / old)
                print(f"{str(im) + '->' + str(om):>34} {rank:>4} {B:>5} {rows:>5} {kind:>8} {old * 1e3:>10.2f} {new * 1e3:>10.2f}"
                      f" {new / old:>12.2f} {peaks[(kind, False)]:>16.1f} {peaks[(kind, True)]:>7.1f}", flush=True)
    print("\nblocks/whole: time in the library's blocks of rows over time on the whole batch (below 1: faster).")
    for kind, rs in ratios.items():
        if rs:
            print(f"  {kind:>8}: geometric mean {math.exp(statistics.fmean(map(math.log, rs))):.3f}, "
                  f"range {min(rs):.2f}-{max(rs):.2f}, rows above 1.05: {sum(r > 1.05 for r in rs)} of {len(rs)}")


if __name__ == "__main__":
    main()
