"""Hostile records: one malformed file in runs/ is named on stderr (one line, by path) and
skipped by leaderboard and verify (exit 1), and treated as not done by `run`: never a
traceback. One validator (`bench.records.record_problem`) serves every reader."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from bench.cli import main
from bench.data.synthetic import VERSION
from bench.records import read_record, record_path, record_problem, write_record

GOOD = {
    "run_id": "good", "status": "ok", "model": "enet", "method": "none", "label": "none",
    "dataset": "synthetic", "budget": "smoke", "seed": 0, "baseline_run_id": "good",
    "config": {"model": "enet", "method": "none", "stages": [], "seed": 0,
               "dataset": "synthetic", "dataset_version": VERSION, "budget": {"name": "smoke"}},
    "metrics": {"miou": 0.5, "pixel_acc": 0.9, "params": 10, "nonzero_params": 10,
                "sparsity": 0.0, "size_bytes": 1000, "compression_ratio": 1.0, "madds": 100,
                "effective_madds": 100, "latency_ms": 1.0, "latency_iqr_ms": 0.1},
}


def _hostile() -> dict[str, object]:
    """The malformed records the issue found, as JSON values (keyed by a file stem)."""
    missing = copy.deepcopy(GOOD)
    del missing["config"]
    abc = copy.deepcopy(GOOD)
    abc["metrics"] = "abc"
    high = copy.deepcopy(GOOD)
    high["metrics"]["miou"] = "high"
    return {"list": [], "abc": abc, "high": high, "missing": missing, "scalar": 3}


def _plant(results, cases) -> list:
    paths = []
    for stem, value in cases.items():
        if isinstance(value, dict):
            value = dict(value, run_id=stem)
        p = record_path(results, stem)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(value))
        paths.append(p)
    bad = record_path(results, "notjson")
    bad.write_text("{not json")
    return [*paths, bad]


@pytest.mark.parametrize("stem", sorted(_hostile()))
def test_validator_names_the_problem(stem):
    value = _hostile()[stem]
    if isinstance(value, dict):
        value = dict(value, run_id=stem)
    assert record_problem(value, stem)
    assert record_problem(dict(GOOD), "good") is None
    assert "file name" in record_problem(dict(GOOD), "other")
    assert "'seed' must be a int, not bool" in record_problem(dict(GOOD, seed=True), "good")


def _one_line_per_path(err: str, paths) -> None:
    assert "Traceback" not in err
    for p in paths:
        lines = [ln for ln in err.splitlines() if str(p) in ln]
        assert len(lines) == 1, (p, err)


def test_leaderboard_skips_malformed_records_and_exits_1(tmp_path, capsys):
    write_record(tmp_path, dict(GOOD))
    paths = _plant(tmp_path, _hostile())
    assert main(["leaderboard", "--results", str(tmp_path)]) == 1
    _one_line_per_path(capsys.readouterr().err, paths)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "| enet " in md  # the good record still makes its row
    (tmp_path / "runs" / "high.json").unlink()
    for p in paths:
        p.unlink(missing_ok=True)
    assert main(["leaderboard", "--results", str(tmp_path)]) == 0


def test_verify_names_malformed_records_and_exits_1(tmp_path, capsys):
    paths = _plant(tmp_path, _hostile())
    assert main(["verify", "--results", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    _one_line_per_path("\n".join(ln for ln in err.splitlines() if ln.startswith("warning")),
                       paths)
    assert "0/0 runs; 6 malformed record(s)" in err


@pytest.mark.parametrize("value", [[], {"run_id": "x"}])
def test_run_treats_a_malformed_record_as_not_done(make_spec, results, value, capsys):
    from bench.runner import pending, run_grid

    spec = make_spec("none", "enet")
    p = record_path(results, spec.run_id)
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps(value))
    assert read_record(results, spec.run_id) is None
    assert pending([spec], results)[0] == [spec]
    (rec,) = run_grid([spec], results=results, device=torch.device("cpu"))
    assert rec["status"] == "ok"
    assert read_record(results, spec.run_id)["status"] == "ok"  # repaired on disk
    assert f"ignoring malformed record {p}" in capsys.readouterr().err
