"""How often TTLinear's plan model picks the fastest contraction: each plan forced and timed, against the model's pick.

Usage: python bench/tt_plans.py [--device cpu|cuda] [--dtype float32|float64] [--set fit|check|quick] [--json FILE]

For each layer shape, TT rank, batch size and pass (forward under no_grad, forward+backward by autograd.grad), the
three contractions of chapter 02 (the sweep, the opt_einsum order, rebuilding the weight) are forced and timed,
interleaved round by round, medians. For the cost model (`plan="model"`, FLOPs plus a charge per element of large
tensors) and for the FLOP count alone (the same model with the memory charge set to zero, the model before it), the
script prints the plan each picks and its *regret*: the time of that plan over the time of the fastest. The summary
gives the geometric mean and the largest regret, and how many rows lose more than 15 %.

`--set fit` is the set of shapes the CPU charge was chosen on (about 9 minutes on 2 cores); `--set check` holds other
shapes, for an out-of-sample check (about 6 minutes); `--set quick` two shapes at three batch sizes (under a minute).
"""
import argparse
import json
import math
import statistics
import time

import torch

import tensornn.compression as comp
from tensornn.compression import TTLinear

from common import median_times

SETS = {
    "fit": [((8, 8, 16), (8, 8, 16), 4), ((8, 8, 16), (8, 8, 16), 16), ((16, 16, 16), (16, 16, 16), 8),
            ((4, 16, 16), (4, 16, 16), 8), ((8, 16, 16), (8, 8, 8), 8), ((8, 8, 8, 8), (8, 8, 8, 8), 16),
            ((16, 16), (16, 16), 4), ((32, 32), (32, 32), 16), ((16, 16, 16), (16, 16, 16), 32)],
    "check": [((4, 8, 8, 8), (4, 8, 8, 8), 8), ((16, 16, 16), (8, 8, 8), 16), ((8, 32), (8, 32), 8),
              ((8, 8, 8), (8, 8, 8), 32), ((16, 32), (16, 32), 8), ((8, 8, 8, 8), (8, 8, 8, 8), 4),
              ((8, 16, 32), (8, 16, 32), 6)],
    "quick": [((8, 8, 16), (8, 8, 16), 4), ((8, 8, 16), (8, 8, 16), 16)],
}
PLANS = ("sweep", "einsum", "dense")
BETAS = (128, 256, 384, 512, 768, 1024, 2048)        # other memory charges, for how much the picks depend on it


def plan_kind(plan) -> str:
    return "sweep" if plan is None else plan if isinstance(plan, str) else "einsum"


def model_pick(layer: TTLinear, B: int, beta=None) -> str:
    "The plan the model picks for batch B, with its own memory charge or with `beta` in its place (0: FLOPs alone)."
    saved = dict(comp._MOVE_COST)
    if beta is not None: comp._MOVE_COST.update({k: beta for k in saved})
    try:
        return plan_kind(layer._model_plan(B))
    finally:
        comp._MOVE_COST.update(saved)


def time_plans(im, om, rank, B, dtype, device) -> dict:
    "Median seconds of each forced plan, forward and forward+backward."
    n_in, n_out = math.prod(im), math.prod(om)
    layers = {k: TTLinear(n_in, n_out, rank, in_modes=im, out_modes=om, seed=0, plan=k, dtype=dtype, device=device)
              for k in PLANS}
    x = torch.randn(B, n_in, dtype=dtype, device=device)
    xg = x.clone().requires_grad_()
    out = {}
    for kind in ("fwd", "fwd+bwd"):
        fns = {}
        for k, layer in layers.items():
            if kind == "fwd":
                def fn(layer=layer):
                    with torch.no_grad(): layer(x)
            else:
                def fn(layer=layer, params=list(layer.cores)):
                    torch.autograd.grad(layer(xg).sum(), [xg, *params])
            fns[k] = fn
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
        for fn in fns.values(): fn()
        sync(); t0 = time.perf_counter()
        for fn in fns.values(): fn()
        sync(); one_round = time.perf_counter() - t0
        out[kind], _ = median_times(fns, device, max(5, min(40, int(0.5 / max(one_round, 1e-9)))))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--set", default="quick", choices=sorted(SETS))
    ap.add_argument("--json", default=None, help="also write every row to this file")
    args = ap.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if device.type == "cuda" and not torch.cuda.is_available(): raise SystemExit("--device cuda: CUDA is not available")
    batches = [1, 64, 1024] if args.set == "quick" else [1, 4, 16, 64, 256, 1024, 4096]
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else f", {torch.get_num_threads()} threads")
          + f", dtype {dtype}; memory charge {comp._MOVE_COST} FLOPs per element of tensors >= "
          f"{comp._LARGE_BYTES >> 20} MiB; set '{args.set}'")
    print(f"{'layer':>34} {'rank':>4} {'batch':>5} {'pass':>8} " + " ".join(f"{k + ' ms':>10}" for k in PLANS)
          + f" {'model':>7} {'regret':>6} {'FLOPs':>7} {'regret':>6}")
    rows = []
    item = torch.empty((), dtype=dtype).element_size()
    for im, om, rank in SETS[args.set]:
        layer = TTLinear(math.prod(im), math.prod(om), rank, in_modes=im, out_modes=om, seed=0, dtype=dtype, device=device)
        for B in batches:
            if B * max(layer.in_features, layer.out_features) * max(layer.rank) * item > 2 ** 33 // 4: continue
            picks = {"model": model_pick(layer, B), "flops": model_pick(layer, B, 0)}
            other = {beta: model_pick(layer, B, beta) for beta in BETAS}
            for kind, times in time_plans(im, om, rank, B, dtype, device).items():
                best = min(times.values())
                row = dict(in_modes=im, out_modes=om, rank=rank, B=B, kind=kind, times=times, **picks, other=other,
                           regret_model=times[picks["model"]] / best, regret_flops=times[picks["flops"]] / best)
                rows.append(row)
                print(f"{str(im) + '->' + str(om):>34} {rank:>4} {B:>5} {kind:>8} "
                      + " ".join(f"{times[k] * 1e3:>10.3f}" for k in PLANS)
                      + f" {picks['model']:>7} {row['regret_model']:>6.2f} {picks['flops']:>7} {row['regret_flops']:>6.2f}",
                      flush=True)
    print("\nRegret = time of the picked plan / time of the fastest plan (1.00: it picked the fastest).")
    for who in ("model", "flops"):
        regs = [r[f"regret_{who}"] for r in rows]
        name = "cost model (FLOPs + memory charge)" if who == "model" else "FLOP count alone"
        print(f"  {name:>36}: geometric mean {math.exp(statistics.fmean(map(math.log, regs))):.3f}, "
              f"largest {max(regs):.2f}, rows above 1.15: {sum(r > 1.15 for r in regs)} of {len(regs)}")
    key = "cuda" if device.type == "cuda" else "cpu"
    print(f"\nThe same timings with other memory charges in place of {comp._MOVE_COST[key]} "
          "(picks differing: of the distinct layer and batch pairs):")
    for beta in BETAS:
        regs = [r["times"][r["other"][beta]] / min(r["times"].values()) for r in rows]
        differ = sum(r["other"][beta] != r["model"] for r in rows if r["kind"] == "fwd")
        print(f"  beta {beta:>5}: picks differing {differ:>3} of {len(rows) // 2}, geometric mean regret "
              f"{math.exp(statistics.fmean(map(math.log, regs))):.3f}, largest {max(regs):.2f}, "
              f"rows above 1.15: {sum(r > 1.15 for r in regs)}")
    if args.json:
        with open(args.json, "w") as f: json.dump(rows, f)


if __name__ == "__main__":
    main()
