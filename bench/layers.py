"""Forward and forward+backward time of tensornn's TTLinear against tensorly-torch's BlockTT FactorizedLinear
and against a dense nn.Linear of the same shape, side by side in one process.

Usage: python bench/layers.py [--device cpu|cuda] [--threads N] [--dtype float32|float64] [--quick]

For each layer shape and TT rank, and batch sizes 1..1024, prints the median time of each layer (the layers
interleaved round by round) and the
ratios tltorch/ours and dense/ours (> 1 means ours is faster), with the FLOP ratio dense/TT per row that says
where a factorized layer *can* beat the dense one, the contraction ours chose for that batch (sweep, einsum order,
or rebuilding the weight: chapter 02's cost model), and the peak memory of one forward+backward pass of each
layer (bench/common.py). "ours" is TTLinear with its default plan="model" (the cost model: FLOPs and a memory charge); "ours-meas" is the same
layer with plan="measure", which times the candidate contractions once per batch size and grad mode and keeps the
fastest. All TT layers hold the same cores (copied from ours), and their outputs are checked to agree before timing.
The summary counts the rows where a TT layer of ours is slower than both the dense layer and the faster tltorch mode.
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn

from tensornn.compression import TTLinear

from common import median_times, peak_mib

try:
    import tltorch
except Exception as e:                        # report, and compare with dense only
    tltorch, TLTORCH_ERROR = None, f"{type(e).__name__}: {e}"


def interleaved_medians(fns: dict, device) -> dict:
    """Median wall time of each fns[name]() with the contenders interleaved round by round (bench/common.py), so a
    change in machine load hits all alike; as many rounds as fit in about 0.6 s, between 21 and 60 (the order is
    shuffled per round, and the median of 21 holds even where a quarter of a contender's rounds follow a slow,
    allocation-heavy one such as the rebuilt 4096 x 4096 weight)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in fns.values(): fn(); fn()
    sync(); t0 = time.perf_counter()
    for fn in fns.values(): fn()
    sync(); one_round = time.perf_counter() - t0
    times, _ = median_times(fns, device, max(21, min(60, int(0.6 / max(one_round, 1e-9)))))
    return times


def make_layers(n_in, n_out, in_modes, out_modes, rank, dtype, device):
    ours = TTLinear(n_in, n_out, rank, in_modes=in_modes, out_modes=out_modes, dtype=dtype, device=device, seed=0)
    dense = nn.Linear(n_in, n_out, dtype=dtype, device=device)
    measured = TTLinear(n_in, n_out, rank, in_modes=in_modes, out_modes=out_modes, dtype=dtype, device=device, seed=0,
                        plan="measure")
    with torch.no_grad():
        for G, H in zip(measured.cores, ours.cores): G.copy_(H)
        measured.bias.copy_(ours.bias)
    peers = {}
    if tltorch is not None:
        for impl in ("factorized", "reconstructed"):
            tl = tltorch.FactorizedLinear(in_tensorized_features=in_modes, out_tensorized_features=out_modes,
                                          factorization="blocktt", rank=rank, implementation=impl, bias=True)
            tl = tl.to(dtype=dtype, device=device)
            with torch.no_grad():
                for f, G in zip(tl.weight.factors, ours.cores): f.copy_(G)
                tl.bias.copy_(ours.bias)
            peers[f"tltorch-{impl[:5]}"] = tl
    return ours, measured, dense, peers


def _plan_name(layer, B, grad):
    plan = layer._plans.get((B, grad), "?")
    return "sweep" if plan is None else plan if isinstance(plan, str) else "einsum"


def bench_config(n_in, n_out, in_modes, out_modes, rank, batches, dtype, device):
    ours, measured, dense, peers = make_layers(n_in, n_out, in_modes, out_modes, rank, dtype, device)
    x_check = torch.randn(5, n_in, dtype=dtype, device=device)
    with torch.no_grad():
        for name, tl in peers.items():
            torch.testing.assert_close(tl(x_check), ours(x_check), rtol=1e-3, atol=1e-4)
    flop_ratio = ours.dense_flops / ours.flops
    print(f"\n== {n_in}x{n_out}, in_modes={in_modes}, out_modes={out_modes}, TT ranks {ours.rank}: "
          f"{ours.n_params} params (dense {dense.weight.numel() + n_out}), FLOPs/row dense/TT = {flop_ratio:.2f}")
    names = ["ours", "ours-meas", "dense"] + list(peers)
    layers = [("ours", ours), ("ours-meas", measured), ("dense", dense)] + list(peers.items())
    head = f"{'batch':>5} {'pass':>8} " + " ".join(f"{n + ' ms':>17}" for n in names) + \
        "   " + " ".join(f"{n + '/ours':>20}" for n in names[1:]) + f" {'ours plan':>10} {'meas plan':>10}" + \
        "   peak MiB (fwd+bwd): " + " ".join(names)
    print(head)
    rows = []
    for B in batches:
        x = torch.randn(B, n_in, dtype=dtype, device=device)
        for kind in ("fwd", "fwd+bwd"):
            fns = {}
            for name, layer in layers:
                if kind == "fwd":
                    def fn(layer=layer):
                        with torch.no_grad(): layer(x)
                else:
                    def fn(layer=layer):
                        layer.zero_grad(set_to_none=True); layer(x).sum().backward()
                fns[name] = fn
            res = interleaved_medians(fns, device)
            rows.append((B, kind, res))
            plans = f"{_plan_name(ours, B, kind != 'fwd'):>10} {_plan_name(measured, B, kind != 'fwd'):>10}"
            mem = ""
            if kind == "fwd+bwd":
                mem = " ".join(f"{peak_mib(lambda l=layer: l(x).sum().backward(), device):.1f}"
                               for _, layer in layers)
            print(f"{B:>5} {kind:>8} " + " ".join(f"{res[n] * 1e3:>17.4f}" for n in names) + "   " +
                  " ".join(f"{res[n] / res['ours']:>20.2f}" for n in names[1:]) + f" {plans}   {mem}", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true", help="one small configuration only")
    args = ap.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else f", {torch.get_num_threads()} threads")
          + f", dtype {dtype}")
    if tltorch is None:
        print(f"tensorly-torch unavailable ({TLTORCH_ERROR}); comparing with dense only")
    else:
        print(f"tensorly-torch {tltorch.__version__}")
    batches = [1, 4, 16, 64, 256, 1024]
    configs = [(1024, 1024, (8, 8, 16), (8, 8, 16), 4),
               (1024, 1024, (8, 8, 16), (8, 8, 16), 16),
               (4096, 4096, (16, 16, 16), (16, 16, 16), 8)]
    if device.type == "cuda":
        configs.append((16384, 16384, (16, 32, 32), (16, 32, 32), 16))
    if args.quick: configs, batches = configs[:1], [1, 64, 1024]
    summary = []
    for cfg in configs:
        rows = bench_config(*cfg, batches, dtype, device)
        summary.append((cfg, rows))
    print("\nSummary (ratio > 1: ours faster):")
    for (n_in, n_out, im, om, r), rows in summary:
        for name in sorted({n for _, _, res in rows for n in res} - {"ours"}):
            ratios = [res[name] / res["ours"] for _, _, res in rows]
            print(f"  {n_in}x{n_out} rank {r:>2}: {name:>17}/ours  min {min(ratios):6.2f}  median "
                  f"{statistics.median(ratios):6.2f}  max {max(ratios):6.2f}")
    if tltorch is not None:
        print("\nRows where a TT layer of ours is slower than both dense and the faster tltorch mode (goal: none):")
        for who in ("ours", "ours-meas"):
            bad = [f"{n_in}x{n_out} r{r} B={B} {kind} ({res[who] / max(res['dense'], min(res[p] for p in res if p.startswith('tltorch'))):.2f}x)"
                   for (n_in, n_out, im, om, r), rows in summary for B, kind, res in rows
                   if res[who] > res["dense"] and res[who] > min(res[p] for p in res if p.startswith("tltorch"))]
            print(f"  {who:>9}: {len(bad)} of {sum(len(rows) for _, rows in summary)}" + (": " + "; ".join(bad) if bad else ""))


if __name__ == "__main__":
    main()
