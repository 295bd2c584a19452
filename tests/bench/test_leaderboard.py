import json

import pytest

from bench.data.synthetic import VERSION
from bench.facts import Distill, OrtTiming, Teacher, report
from bench.leaderboard import build_rows, write_leaderboard
from bench.records import iter_records, write_record


def _rec(run_id, method, seed, miou, latency, base_id, size=1000, madds=100, status="ok"):
    r = {
        "run_id": run_id, "status": status, "model": "enet", "method": method,
        "label": method, "dataset": "synthetic", "budget": "smoke", "seed": seed,
        "baseline_run_id": base_id,
        "config": {"model": "enet", "method": method, "stages": [], "seed": seed,
                   "dataset": "synthetic", "dataset_version": VERSION,
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
    assert "## failed, not applicable and stale runs" in text and "RuntimeError: it broke" in text
    assert len(csv.read_text().splitlines()) == 2


def test_records_of_an_older_dataset_version_are_left_out_and_named(tmp_path, capsys):
    write_record(tmp_path, _rec("b0", "none", 0, 0.8, 10.0, "b0"))
    old = _rec("b1", "none", 0, 0.3, 10.0, "b1")
    old["config"]["dataset_version"] = "v0"
    write_record(tmp_path, old)
    rows, listed = build_rows(tmp_path)
    assert [r["run_ids"] for r in rows] == ["b0"]
    assert [(f["run_id"], f["status"]) for f in listed] == [("b1", "stale")]
    assert "version v0" in listed[0]["error"] and VERSION in listed[0]["error"]
    text = write_leaderboard(tmp_path)[0].read_text()
    assert "| b1 " in text and "stale" in text
    assert [r["run_id"] for r in iter_records(tmp_path)] == ["b0"]
    assert "1 record(s)" in capsys.readouterr().err


def test_unreadable_record_is_skipped_with_warning(tmp_path, capsys):
    write_record(tmp_path, _rec("b0", "none", 0, 0.8, 10.0, "b0"))
    (tmp_path / "runs" / "junk.json").write_text("{not json")
    rows, _ = build_rows(tmp_path)
    assert len(rows) == 1
    assert "junk.json" in capsys.readouterr().err
    json.loads((tmp_path / "runs" / "b0.json").read_text())


def test_paired_confidence_interval_marks_real_differences(tmp_path):
    from scipy.stats import t

    from bench.leaderboard import paired_ci95

    d = [-0.02, -0.03, -0.025]
    half = paired_ci95(d)
    sd = (sum((x + 0.025) ** 2 for x in d) / 2) ** 0.5
    assert half == pytest.approx(t.ppf(0.975, 2) * sd / 3**0.5)
    assert paired_ci95([0.1]) is None
    for seed, (b, m) in enumerate([(0.80, 0.78), (0.82, 0.79), (0.81, 0.785)]):
        write_record(tmp_path, _rec(f"b{seed}", "none", seed, b, 10.0, f"b{seed}"))
        write_record(tmp_path, _rec(f"m{seed}", "prune", seed, m, 5.0, f"b{seed}"))
    # a noisy method whose interval straddles zero
    for seed, m in enumerate([0.85, 0.77, 0.82]):
        write_record(tmp_path, _rec(f"n{seed}", "noisy", seed, m, 5.0, f"b{seed}"))
    rows, _ = build_rows(tmp_path)
    by = {r["method"]: r for r in rows}
    assert by["prune"]["significant"] is True and by["noisy"]["significant"] is False
    md = write_leaderboard(tmp_path)[0].read_text()
    assert "-2.5 ± " in md and "*" in md.split("| prune")[1].split("\n")[0]


def test_model_page_calls_out_the_classes_hurt_most(tmp_path):
    b = _rec("b0", "none", 0, 0.8, 10.0, "b0")
    b["metrics"]["per_class_iou"] = [0.9, 0.8, 0.7, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5]
    m = _rec("m0", "prune", 0, 0.7, 5.0, "b0")
    m["metrics"]["per_class_iou"] = [0.9, 0.8, 0.2, 0.6, 0.5, 0.5, 0.5, 0.4, 0.5]
    write_record(tmp_path, b)
    write_record(tmp_path, m)
    write_leaderboard(tmp_path)
    page = (tmp_path / "models" / "enet.md").read_text()
    hurt = page.split("hurt most: ")[1].splitlines()[0]
    assert hurt.startswith("stripes_square (-50.0), checker_triangle (-10.0)")


def test_cost_column_is_the_runs_own_and_the_csv_adds_the_baselines(tmp_path):
    b = _rec("b0", "none", 0, 0.8, 10.0, "b0")
    b["cost"] = {"run_s": 360.0, "baselines_s": 3240.0, "total_s": 3600.0}
    r = _rec("m0", "kd", 0, 0.7, 5.0, "b0")
    r["cost"] = {"run_s": 1800.0, "baselines_s": 5400.0, "total_s": 7200.0}
    old = _rec("o0", "prune", 0, 0.7, 5.0, "b0")
    old["cost"] = {"total_s": 900.0}  # a record from before `run_s`
    for x in (b, r, old):
        write_record(tmp_path, x)
    rows, _ = build_rows(tmp_path)
    by = {x["method"]: x for x in rows}
    assert by["kd"]["cost_device_hours"] == pytest.approx(0.5)  # not the teachers' training
    assert by["kd"]["cost_with_baselines_hours"] == pytest.approx(2.0)
    assert by["none"]["cost_device_hours"] == pytest.approx(1.0)  # a baseline: its training
    assert by["prune"]["cost_device_hours"] == pytest.approx(0.25)


def _paired(rec, speedup, iqr, noisy=False):
    rec["metrics"].update({"latency_paired": True, "speedup": speedup, "speedup_iqr": iqr,
                           "latency_noisy": noisy})
    return rec


def test_speedup_is_the_runs_own_paired_ratio_with_its_spread(tmp_path):
    write_record(tmp_path, _paired(_rec("b0", "none", 0, 0.8, 10.0, "b0"), 1.0, 0.02))
    # timed 3x slower than the baseline's own record, but paired in-process it reads 1.01
    write_record(tmp_path, _paired(_rec("k0", "kd", 0, 0.8, 30.0, "b0"), 1.01, 0.03))
    write_record(tmp_path, _paired(_rec("h0", "hashing", 0, 0.5, 9.0, "b0"), 1.2, 1.5, True))
    write_record(tmp_path, _rec("p0", "prune", 0, 0.7, 5.0, "b0"))  # an older record
    rows, _ = build_rows(tmp_path)
    by = {r["method"]: r for r in rows}
    assert by["kd"]["speedup"] == pytest.approx(1.01) and by["kd"]["speedup_paired"]
    assert by["hashing"]["latency_noisy"] and not by["kd"]["latency_noisy"]
    assert by["prune"]["speedup"] == pytest.approx(2.0) and not by["prune"]["speedup_paired"]
    write_leaderboard(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    cells = {m: [c.strip() for c in next(x for x in md.splitlines() if f"| {m} " in x)
                 .split("|")] for m in by}
    assert "1.01 (0.03)" in cells["kd"]
    assert "1.20 (1.50) !" in cells["hashing"]
    assert "2.00 unpaired" in cells["prune"]


def test_onnxruntime_rows_are_sped_up_against_the_onnxruntime_baseline(tmp_path):
    write_record(tmp_path, _rec("b0", "none", 0, 0.8, 10.0, "b0"))
    q = _rec("q0", "ptq", 0, 0.79, 8.0, "b0")  # faster than eager torch...
    q["metrics"]["runtime"] = "onnxruntime"
    q["extras"] = {}
    report(q["extras"], OrtTiming(  # ...but slower than the same graph in fp32
        ort_fp32_latency_ms=9.0, ort_fp32_latency_iqr_ms=0.1, ort_int_latency_ms=10.0,
        ort_int_latency_iqr_ms=0.1, ort_speedup=0.9, ort_threads=1, ort_layout="nchw",
        ort_integer_ops={"QLinearConv": 3}, ort_float_convs=0))
    write_record(tmp_path, q)
    write_record(tmp_path, _rec("p0", "prune", 0, 0.7, 5.0, "b0"))
    rows, _ = build_rows(tmp_path)
    by = {r["method"]: r["speedup"] for r in rows}
    assert by["ptq"] == pytest.approx(0.9) and by["prune"] == pytest.approx(2.0)


def _distilled(run_id, method, seed, miou, base_id, undistilled_id):
    r = _rec(run_id, method, seed, miou, 10.0, base_id)
    r["extras"] = {}
    report(r["extras"], Teacher(model="enet", model_kwargs={}, run_id=base_id,
                                train_seconds=1.0, train_steps=2, trained_now=False, miou=0.80))
    report(r["extras"], Distill(method=method.split("+")[-1], student_layers=[],
                                teacher_layers=[], undistilled_run_id=undistilled_id))
    return r


def test_distilled_students_are_shown_beside_their_undistilled_twin(tmp_path):
    for seed, (b, cheap, cheap_at) in enumerate([(0.80, 0.60, 0.64), (0.82, 0.62, 0.65)]):
        write_record(tmp_path, _rec(f"b{seed}", "none", seed, b, 10.0, f"b{seed}"))
        write_record(tmp_path, _rec(f"c{seed}", "cheapconv", seed, cheap, 8.0, f"b{seed}"))
        write_record(tmp_path, _distilled(f"a{seed}", "cheapconv+at", seed, cheap_at, f"b{seed}",
                                          f"c{seed}"))
    write_record(tmp_path, _distilled("k0", "kd", 0, 0.77, "b0", "missing0"))
    rows, _ = build_rows(tmp_path)
    by_method = {r["method"]: r for r in rows}
    at = by_method["cheapconv+at"]
    assert at["teacher"] == "enet (b0)" and at["teacher_miou"] == pytest.approx(0.80)
    assert at["undistilled"] == "cheapconv (c0)"
    assert at["undistilled_miou"] == pytest.approx(0.61)
    assert at["delta_undistilled"] == pytest.approx(((0.64 - 0.60) + (0.65 - 0.62)) / 2)
    assert at["delta_undistilled_ci95"] is not None  # two paired seeds
    assert by_method["kd"]["undistilled"] == "not run (missing0)"
    assert by_method["cheapconv"]["teacher"] is None
    text = write_leaderboard(tmp_path)[0].read_text()
    section = text.split("### distillation")[1]
    assert "cheapconv+at" in section and "+3.5 ±" in section and "not run (missing0)" in section
    students = [line.split("|")[2].strip() for line in section.splitlines()
                if line.startswith("| enet")]
    assert students == ["cheapconv+at", "kd"]  # undistilled rows stay in the main table


def test_runs_at_different_thread_counts_are_never_averaged(tmp_path, capsys):
    """The run id does not name the thread count; the leaderboard keeps such runs apart."""
    for seed, threads in ((0, 1), (1, 2), (2, 2)):
        r = _rec(f"b{seed}", "none", seed, 0.8 + seed / 100, 2.0, f"b{seed}")
        r["env"] = {"device": "cpu", "threads": threads}
        write_record(tmp_path, r)
    rows, _ = build_rows(tmp_path)
    assert sorted((r["threads"], r["seeds"]) for r in rows) == [(1, 1), (2, 2)]
    assert {r["config"] for r in rows} == {"cpu, 1 thread", "cpu, 2 threads"}
    err = capsys.readouterr().err
    assert "differ in thread count;" in err and "never averaged" in err


def test_rows_apart_by_runtimes_timed_say_so_not_device_or_threads(tmp_path, capsys):
    """Two baselines on one machine setting, one also timed in deployment runtimes
    (`--set runtimes=...`): the label and the warning name the runtimes, the one
    difference, and never blame a device or thread count that is the same."""
    for run_id, runtimes in (("b0", None), ("b1", ["torch", "onnxruntime", "openvino"])):
        r = _rec(run_id, "none", 0, 0.8, 2.0, run_id)
        r["env"] = {"device": "cpu", "threads": 1}
        if runtimes:
            r["config"]["runtimes"] = runtimes
        write_record(tmp_path, r)
    rows, _ = build_rows(tmp_path)
    assert sorted(r["config"] for r in rows) == [
        "cpu, 1 thread", "cpu, 1 thread, runtimes: torch, onnxruntime, openvino"]
    err = capsys.readouterr().err
    assert "differ in deployment runtimes timed" in err
    assert "thread" not in err and "device" not in err


def test_rows_apart_by_another_run_setting_name_it(tmp_path, capsys):
    """Any other setting that keeps runs of one config cell apart is named as key=value."""
    for run_id, lr in (("b0", 0.1), ("b1", 0.2)):
        r = _rec(run_id, "none", 0, 0.8, 2.0, run_id)
        r["env"] = {"device": "cpu", "threads": 1}
        r["config"]["budget"]["lr"] = lr
        write_record(tmp_path, r)
    rows, _ = build_rows(tmp_path)
    assert sorted(r["config"] for r in rows) == ["cpu, 1 thread, budget.lr=0.1",
                                                 "cpu, 1 thread, budget.lr=0.2"]
    assert "differ in budget.lr;" in capsys.readouterr().err
