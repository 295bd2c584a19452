"""Latency as a deployment engineer measures it: batch 1 at the evaluation size, after
warm-up, with the thread count fixed and recorded, the device synchronised around each
timed call; the median and the interquartile range over the timed runs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def measure_latency(predict: Callable[[torch.Tensor], object], input_shape: tuple[int, ...],
                    device: torch.device, runs: int = 30, warmup: int = 5) -> dict:
    if runs < 1:
        raise ValueError("latency runs must be >= 1")
    x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(warmup):
            predict(x)
        sync()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            predict(x)
            sync()
            times.append((time.perf_counter() - t0) * 1000.0)
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return {
        "latency_ms": statistics.median(times),
        "latency_iqr_ms": q[2] - q[0],
        "latency_p25_ms": q[0],
        "latency_p75_ms": q[2],
        "latency_runs": runs,
        "threads": torch.get_num_threads(),
    }
