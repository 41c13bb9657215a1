"""What every bench shares: CUDA synchronisation, interleaved timing with medians, and peak memory per call.

Peak memory is the high-water mark *above what was resident before the call*, result included:
on CUDA from `torch.cuda.max_memory_allocated`; on CPU from the kernel's peak resident set size (VmHWM), which
this module resets before each call (`/proc/self/clear_refs`, Linux). So that freed blocks go back to the kernel
and a call's peak is its own, glibc's mmap and trim thresholds are set to 128 KiB *while a peak is measured* (large
blocks are mapped and unmapped, not kept in the heap, and the heap is trimmed first). While times are measured they
are set to 32 MiB and 64 MiB, which is where glibc's own dynamic thresholds settle in a long-running process: with
128 KiB, every block above it would be a fresh mapping whose pages fault in on first touch, which made
allocation-heavy calls (ours and the peers' alike) up to 1.5x slower than they run in practice. Where the CPU
measurement is not available it reports NaN.
"""
from __future__ import annotations

import ctypes
import gc
import math
import random
import statistics
import time

import torch

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
try:
    _LIBC = ctypes.CDLL("libc.so.6")
except OSError:
    _LIBC = None


def _malloc_mode(measuring_peak: bool) -> None:
    "glibc thresholds for measuring a peak (small: memory goes back at once) or for timing (those of a warm process)."
    if _LIBC is None: return
    mmap_threshold, trim_threshold = (128 << 10, 128 << 10) if measuring_peak else (32 << 20, 64 << 20)
    _LIBC.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
    _LIBC.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    if measuring_peak: _LIBC.malloc_trim(0)


_malloc_mode(measuring_peak=False)


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize(device)


def median_times(fns: dict, device, repeats: int):
    """Median wall time of each `fns[name]()` over `repeats` rounds, interleaved (each once in every round, so a
    change in load hits all alike), after one untimed warm-up each. Returns `({name: s}, {name: last result})`.
    The order is shuffled from round to round (seeded, so a run repeats): in a fixed order each contender would always
    run right after the same other one and inherit what that one left in the caches and the allocator (in
    bench/layers.py, one TT layer and plan took 0.54 ms right after a contender that builds a 64 MiB weight, and
    0.23 ms as the next one in the round)."""
    for fn in fns.values(): fn()
    sync(device)
    times, out, names, rng = {name: [] for name in fns}, {}, list(fns), random.Random(0)
    for _ in range(repeats):
        rng.shuffle(names)
        for name in names:
            sync(device); t0 = time.perf_counter()
            out[name] = fns[name]()
            sync(device); times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}, out


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"): return int(line.split()[1])
    raise OSError(field)


def peak_mib(fn, device) -> float:
    "Peak memory (MiB) that one call of `fn` adds to what was allocated (CUDA) or resident (CPU) before it."
    gc.collect()
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = fn(); sync(device)
        peak = torch.cuda.max_memory_allocated(device)
        del out
        return (peak - base) / 2 ** 20
    _malloc_mode(measuring_peak=True)
    try:
        with open("/proc/self/clear_refs", "w") as f: f.write("5")          # reset VmHWM to the current RSS
        base = _status_kib("VmRSS")
        out = fn()
        peak = _status_kib("VmHWM")
    except OSError:
        return math.nan
    finally:
        _malloc_mode(measuring_peak=False)
    del out
    return (peak - base) / 1024


def peaks_mib(fns: dict, device) -> dict:
    "`peak_mib` of every contender, one call each, after the timing (so caches and workspaces exist already)."
    return {name: peak_mib(fn, device) for name, fn in fns.items()}
