import json

import pytest

from bench.leaderboard import build_rows, write_leaderboard
from bench.records import write_record


def _rec(run_id, method, seed, miou, latency, base_id, size=1000, madds=100, status="ok"):
    r = {
        "run_id": run_id, "status": status, "model": "enet", "method": method,
        "label": method, "dataset": "synthetic", "budget": "smoke", "seed": seed,
        "baseline_run_id": base_id,
        "config": {"model": "enet", "method": method, "stages": [], "seed": seed,
                   "budget": {"name": "smoke"}},
    }
    if status == "ok":
        r["metrics"] = {"miou": miou, "pixel_acc": 0.9, "params": 10, "nonzero_params": 5,
                        "sparsity": 0.5, "size_bytes": size, "compression_ratio": 4000 / size,
                        "madds": madds, "effective_madds": madds / 2, "latency_ms": latency,
                        "latency_iqr_ms": 0.1}
    else:
        r["error"] = "RuntimeError: it broke"
    return r


def test_rows_pair_seeds_with_their_baselines(tmp_path):
    for seed, (b, m) in enumerate([(0.80, 0.70), (0.90, 0.86)]):
        write_record(tmp_path, _rec(f"b{seed}", "none", seed, b, 10.0, f"b{seed}", 4000, 200))
        write_record(tmp_path, _rec(f"m{seed}", "prune", seed, m, 5.0, f"b{seed}"))
    rows, failed = build_rows(tmp_path)
    assert not failed
    prune = next(r for r in rows if r["method"] == "prune")
    assert prune["seeds"] == 2
    assert prune["miou"] == pytest.approx(0.78)
    assert prune["delta_miou"] == pytest.approx(((0.70 - 0.80) + (0.86 - 0.90)) / 2)
    assert prune["speedup"] == pytest.approx(2.0)
    assert prune["madds_ratio"] == pytest.approx(2.0)
    assert rows[0]["method"] == "none"  # baseline first


def test_failed_runs_are_listed_with_their_reason(tmp_path):
    write_record(tmp_path, _rec("b0", "none", 0, 0.8, 10.0, "b0"))
    write_record(tmp_path, _rec("x0", "prune", 0, 0, 0, "b0", status="failed"))
    md, csv = write_leaderboard(tmp_path)
    text = md.read_text()
    assert "## failed runs" in text and "RuntimeError: it broke" in text
    assert len(csv.read_text().splitlines()) == 2


def test_unreadable_record_is_skipped_with_warning(tmp_path, capsys):
    write_record(tmp_path, _rec("b0", "none", 0, 0.8, 10.0, "b0"))
    (tmp_path / "runs" / "junk.json").write_text("{not json")
    rows, _ = build_rows(tmp_path)
    assert len(rows) == 1
    assert "junk.json" in capsys.readouterr().err
    json.loads((tmp_path / "runs" / "b0.json").read_text())
