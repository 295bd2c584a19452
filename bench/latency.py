"""Latency as a deployment engineer measures it, and speedup as a ratio that survives a
shared host.

Batch 1 at the evaluation size, after warm-up, threads fixed and recorded, the device
synchronised around each timed call. A row's speedup is never a quotient of timings taken
in different processes: the row's predictor and its baseline's (same runtime, same input,
same threads) run in interleaved rounds, the order alternating every round (A B, B A, ...)
so neither always runs on a cache the other warmed, and the speedup is the median of the
per-round ratios baseline / row. A neighbour's load that slows a round slows both halves of
it, so the ratio holds where the absolute figures drift.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from bench.numerics import denormals_flushed, flush_denormals

Predictor = Callable[[torch.Tensor], object]


def _quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")  # within the data, as the 2.5-97.5
    return q[0], statistics.median(xs), q[2]


def _summary(times: list[float]) -> dict:
    p25, med, p75 = _quartiles(times)
    return {"median_ms": med, "iqr_ms": p75 - p25, "p25_ms": p25, "p75_ms": p75,
            "times_ms": times}


def paired_latency(predictors: dict[str, Predictor], input_shape: tuple[int, ...],
                   runs: int, warmup: int, device: torch.device | None = None
                   ) -> dict[str, dict]:
    """Latency (ms) of several predictors timed in interleaved rounds on one input: per
    predictor its median, IQR, quartiles, the per-round times (`times_ms`, round i of
    every predictor was taken back to back, so they pair by index) and whether denormals
    were still flushed after the last round (`denormals_flushed`, bench/numerics.py)."""
    if runs < 1:
        raise ValueError("latency runs must be >= 1")
    device = device or torch.device("cpu")
    # a runtime built before may have cleared it (bench/numerics.py); False: no FTZ/DAZ here
    can_flush = flush_denormals()
    x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    names = list(predictors)
    times: dict[str, list[float]] = {k: [] for k in names}
    with torch.inference_mode():
        for p in predictors.values():
            for _ in range(warmup):
                p(x)
        sync()
        for i in range(runs):
            for k in (names if i % 2 == 0 else names[::-1]):
                t0 = time.perf_counter()
                predictors[k](x)
                sync()
                times[k].append((time.perf_counter() - t0) * 1000.0)
    flushed = denormals_flushed() if can_flush else None  # None: the CPU has no FTZ/DAZ
    return {k: {**_summary(ts), "denormals_flushed": flushed} for k, ts in times.items()}


def ratio_summary(num_ms: list[float], den_ms: list[float]) -> dict:
    """Per-round ratios num/den: their median, quartiles and the 2.5-97.5 percentile
    range (the spread a reader should read the median against)."""
    ratios = sorted(a / b for a, b in zip(num_ms, den_ms, strict=True))
    p25, med, p75 = _quartiles(ratios)
    if len(ratios) >= 2:
        cuts = statistics.quantiles(ratios, n=40, method="inclusive")
        lo, hi = cuts[0], cuts[-1]
    else:
        lo = hi = ratios[0]
    return {"median": med, "p25": p25, "p75": p75, "iqr": p75 - p25, "p2_5": lo, "p97_5": hi}


def measure_paired(predict: Predictor, baseline: Predictor, input_shape: tuple[int, ...],
                   device: torch.device, runs: int = 30, warmup: int = 5) -> dict:
    """The run record's latency fields: the row's own latency, its baseline's, both from
    the same interleaved rounds, and the speedup (baseline / row) with its spread.

    `latency_noisy` flags a measurement whose spread is as large as what it measures (the
    IQR of either latency above its median, or of the ratio above the ratio): its median
    should not be read as a figure; so does one after which denormals were no longer
    flushed (`latency_denormals_flushed` False: a predictor cleared FTZ/DAZ while it was
    timed, bench/numerics.py), whose ratio may be the host's float handling, not the
    method's; None on a CPU without FTZ/DAZ."""
    lat = paired_latency({"row": predict, "baseline": baseline}, input_shape, runs, warmup,
                         device)
    row, base = lat["row"], lat["baseline"]
    ratio = ratio_summary(base["times_ms"], row["times_ms"])
    noisy = (row["iqr_ms"] > row["median_ms"] or base["iqr_ms"] > base["median_ms"]
             or ratio["iqr"] > ratio["median"] or row["denormals_flushed"] is False)
    return {
        "latency_ms": row["median_ms"],
        "latency_iqr_ms": row["iqr_ms"],
        "latency_p25_ms": row["p25_ms"],
        "latency_p75_ms": row["p75_ms"],
        "latency_runs": runs,
        "baseline_latency_ms": base["median_ms"],
        "baseline_latency_iqr_ms": base["iqr_ms"],
        "speedup": ratio["median"],
        "speedup_p25": ratio["p25"],
        "speedup_p75": ratio["p75"],
        "speedup_iqr": ratio["iqr"],
        "speedup_p2_5": ratio["p2_5"],
        "speedup_p97_5": ratio["p97_5"],
        "latency_paired": True,
        "latency_noisy": noisy,
        "latency_denormals_flushed": row["denormals_flushed"],
        "threads": torch.get_num_threads(),
    }

