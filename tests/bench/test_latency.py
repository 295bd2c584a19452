"""Paired latency: a row and its baseline timed in interleaved rounds give a speedup that
reads the models, not the host. Ratios only, in loose bands: no absolute timing is asserted."""

import time

import pytest
import torch

from bench.latency import measure_paired, paired_latency, ratio_summary

SHAPE = (1, 3, 64, 64)


def test_rounds_alternate_their_order_and_pair_by_index():
    calls = []
    preds = {"a": lambda x: calls.append("a"), "b": lambda x: calls.append("b")}
    lat = paired_latency(preds, (1, 1), runs=4, warmup=1)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert all(len(v["times_ms"]) == 4 for v in lat.values())


def test_ratio_summary_is_the_median_of_per_round_ratios():
    # the medians' quotient would be 20/10 = 2; the rounds say 1 (both slowed together)
    num, den = [10.0, 20.0, 40.0], [10.0, 20.0, 40.0]
    assert ratio_summary(num, den)["median"] == pytest.approx(1.0)
    assert ratio_summary([2.0, 4.0, 6.0, 8.0], [1.0, 1.0, 1.0, 1.0])["median"] == 5.0


def test_a_spread_larger_than_the_median_is_flagged_and_a_steady_one_is_not():
    n = [0]

    def jumpy(x):  # every third call takes 20 ms, the others nothing: IQR above the median
        n[0] += 1
        if n[0] % 3 == 0:
            time.sleep(0.02)

    def steady(x):
        time.sleep(0.005)

    cpu = torch.device("cpu")
    assert measure_paired(jumpy, steady, (1, 1), cpu, runs=12, warmup=0)["latency_noisy"]
    assert not measure_paired(steady, steady, (1, 1), cpu, runs=12, warmup=0)["latency_noisy"]


def test_a_run_records_its_paired_latency(make_spec, run_spec, tiny_budget):
    """End to end through the runner: the row and the baseline it started from are timed
    together and the record carries both and the ratio's spread (its value under load is
    `make perf`'s: tests/perf/test_paired_latency.py)."""
    rec = run_spec(make_spec("huffman", "enet"))
    assert rec["status"] == "ok", rec.get("error")
    m = rec["metrics"]
    assert m["latency_paired"] and m["runtime"] == "torch"
    assert m["latency_denormals_flushed"] is True
    assert m["latency_runs"] == tiny_budget.latency_runs
    assert m["baseline_latency_ms"] > 0 and m["latency_ms"] > 0
    assert m["speedup_p2_5"] <= m["speedup_p25"] <= m["speedup"] <= m["speedup_p75"] \
        <= m["speedup_p97_5"]
