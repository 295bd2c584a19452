"""The deployment pass through the real runner: a row timed in every runtime the grid names
against the baseline in the same runtime, with its agreement; the leaderboard's
deployment table; and the baseline weights shared with runs that time nothing more."""

from __future__ import annotations

import pytest
import torch

from bench.facts import DeployLatency, read
from bench.leaderboard import render_leaderboard
from bench.records import OK
from bench.runner import run_one

KW = {"base_channels": 4, "depth": 2}


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    from bench.budgets import get_budget
    from bench.method import expand_methods
    from bench.spec import RunSpec

    results = tmp_path_factory.mktemp("deploy")
    budget = get_budget("smoke", {"train_images": 8, "eval_images": 4, "latency_runs": 3,
                                  "latency_warmup": 0, "batch_size": 4,
                                  "calibration_images": 4})

    def spec(method, runtimes, **sets):
        (v,) = expand_methods(method, sets)
        return RunSpec("unet_small", v.spec, v.label, v.resolved(), "synthetic", budget, 0,
                       dict(KW), runtimes=runtimes)

    rts = ["torch", "onnxruntime"]
    recs = {name: run_one(s, results=results, device=torch.device("cpu"))
            for name, s in (("plain", spec("none", [])), ("none", spec("none", rts)),
                            ("ptq", spec("ptq", rts, calibration_images=2)))}
    return results, recs


def test_rows_are_timed_in_each_runtime_against_the_same_runtime(grid):
    _, recs = grid
    assert all(r["status"] == OK for r in recs.values())
    none = read(recs["none"], DeployLatency).timings()
    assert set(none) == {"torch", "onnxruntime"}
    for t in none.values():  # the baseline against itself: same outputs, both float
        assert t.agreement == 1.0 and t.precision == t.baseline_precision == "fp32"
        assert t.speedup > 0 and t.latency_ms > 0 and t.baseline_latency_ms > 0
    ptq = read(recs["ptq"], DeployLatency)
    assert ptq.timings()["onnxruntime"].precision == "int8"
    assert ptq.timings()["onnxruntime"].baseline_precision == "fp32"
    assert ptq.timings()["onnxruntime"].agreement >= 0.95
    assert "float emulation" in ptq.runtimes["torch"]["skipped"]
    assert read(recs["plain"], DeployLatency) is None  # nothing asked, nothing timed


def test_timing_in_runtimes_reuses_the_baseline_weights(grid):
    results, recs = grid
    assert recs["none"]["run_id"] != recs["plain"]["run_id"]
    assert recs["none"]["baseline"]["sha256"] == recs["plain"]["baseline"]["sha256"]
    assert len(list((results / "cache" / "baselines").glob("*.safetensors"))) == 1


def test_leaderboard_gets_a_deployment_table_and_keeps_its_csv(grid):
    results, _ = grid
    files = render_leaderboard(results)
    md = files["leaderboard.md"]
    assert "### deployment latency" in md
    table = md[md.index("### deployment latency"):]
    assert "| torch" in table and "| onnxruntime" in table
    assert "int8, " in table and "not timed" in table
    assert "float emulation" in table  # the reason is listed under the table
    assert "speedup ÷ MAdds × (best)" in table
    assert "deploy" not in files["leaderboard.csv"].splitlines()[0]


def test_a_retime_times_every_runtime_again_and_keeps_the_old_table(grid):
    """`bench retime` on a row that named runtimes (bench/retime.py): the deployment table
    is taken again, the one it replaces kept under `retimed.previous`."""
    from bench.retime import retime_record

    results, recs = grid
    rec = recs["ptq"]
    assert rec["status"] == OK, rec.get("error")
    new = retime_record(rec, results)
    assert new["metrics"]["runtime"] == "onnxruntime" and new["metrics"]["latency_paired"]
    assert new["retimed"]["previous"]["deploy"] == rec["extras"]["deploy"]
    again = read(new, DeployLatency).timings()
    assert set(again) == set(read(rec, DeployLatency).timings()) == {"onnxruntime"}
    assert again["onnxruntime"].latency_ms > 0
    assert new["metrics"]["miou"] == rec["metrics"]["miou"]
