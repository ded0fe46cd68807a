"""Timing shared by the benchmarks: median milliseconds per call over interleaved rounds after warm-up, CUDA
events on the GPU."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def _once(fn: Callable[[], object], device: torch.device) -> float:
    """Milliseconds of one call: on CUDA bracketed by events and synchronised (the GPU's time, not the
    launch's); on CPU, perf_counter."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def time_interleaved(fns: dict[str, Callable[[], object]], device: torch.device, warmup: int,
                     iters: int) -> dict[str, float]:
    """Median milliseconds per call of each function, timed in ``iters`` rounds that call every function once
    (after ``warmup`` untimed rounds): a machine that slows down or speeds up during the benchmark (a shared
    virtual machine, a GPU's clocks) shifts every function alike, so ratios measured together stay honest."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            times[name].append(_once(fn, device))
    return {name: statistics.median(t) for name, t in times.items()}
