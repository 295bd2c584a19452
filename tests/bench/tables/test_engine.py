"""The table engine end to end on a fake table of tiny ENet runs: missing runs are listed
with a cost, then run; cells come from the records (never made up); failures and
unresolvable declarations show as footnoted gaps; --no-train needs no run."""

from __future__ import annotations

import json
import re

import pytest
import torch

from bench.tables import engine
from bench.tables.schema import Derived, Field, Metric, Row, Run, Static, Table

TINY = {"train_images": 16, "eval_images": 8, "latency_runs": 3, "latency_warmup": 1,
        "batch_size": 8, "calibration_images": 8}
HALF = Run("fp16")

FAKE = Table(
    id="fake",
    title="A fake table",
    report="test report",
    rows=(Row("enet", {"Model": "ENet"}),
          Row("enet", {"Model": "broken"}, model_kwargs={"no_such_kwarg": 1})),
    columns=(
        Field("Model"),
        Static("Params [M]", "params", fmt="M"),
        Static("Dense [MB]", "dense_size", fmt="MB", key="dense"),
        Metric("IoU", "miou", fmt="pct"),
        Metric("Test IoU", "test:miou", fmt="pct"),
        Metric("fp16 [MB]", "size_bytes", HALF, fmt="MB", key="half"),
        Derived("ratio", lambda v: v["dense"] / v["half"] if v["half"] else None,
                ("dense", "half"), fmt="num"),
        Metric("nope", "miou", Run("no_such_method"), fmt="pct"),
    ),
    static_size=(64, 64),
    notes=("A note.",),
    budget_overrides={"smoke": TINY},
)


def _opts(results) -> engine.Options:
    return engine.Options(dataset="synthetic", budget="smoke", results=results,
                          device=torch.device("cpu"), revision="abc123")


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """The fake table's runs, made once for this module (about 10 s on one core)."""
    results = tmp_path_factory.mktemp("tables") / "results"
    opts = _opts(results)
    assert engine.run_missing([FAKE], opts) == 4  # (enet, broken enet) x (none, fp16)
    return opts


def test_plan_resolves_cells_and_reports_unknown_methods(tmp_path):
    planned = engine.plan(FAKE, _opts(tmp_path))
    good = [p for p in planned if p.spec is not None]
    bad = [p for p in planned if p.spec is None]
    assert {p.column for p in bad} == {"nope"}
    assert "unknown method 'no_such_method'" in bad[0].error
    # IoU and Test IoU read the same run; the budget carries the table's smoke overrides
    ids = {(p.row, p.column): p.spec.run_id for p in good}
    assert ids[(0, "IoU")] == ids[(0, "Test IoU")] != ids[(0, "half")]
    assert good[0].spec.budget.train_images == 16 and good[0].spec.budget.name == "smoke"
    assert len(engine.unique_specs(planned)) == 4  # 2 rows x (row run, fp16 run)


def test_missing_runs_go_to_the_chosen_executor(tmp_path, monkeypatch):
    import bench.executors

    seen = {}

    def fake_run_specs(specs, *, executor, results, device, data_root, threads):
        seen.update(executor=executor, ids={s.run_id for s in specs}, device=device,
                    threads=threads)
        return []

    monkeypatch.setattr(bench.executors, "run_specs", fake_run_specs)
    opts = _opts(tmp_path)
    assert engine.run_missing([FAKE], opts, threads=1, executor="ray") == 4
    want = {s.run_id for s in engine.unique_specs(engine.plan(FAKE, opts))}
    assert seen == {"executor": "ray", "ids": want, "device": "cpu", "threads": 1}


def test_dry_run_lists_missing_runs_with_cost_and_runs_nothing(tmp_path, capsys):
    from bench.tables.command import dry_run

    dry_run([FAKE], _opts(tmp_path / "res"))
    out = capsys.readouterr().out
    assert out.startswith("1 tables, dataset synthetic")
    # planned as `bench run --dry-run` plans: baselines first, each run with its tables
    assert "| needed by" in out and "| fake " in out
    assert "4 runs, 0 done, 4 new (2 baselines to train)" in out
    assert "unknown (TypeError" in out  # a model that cannot be built: cost unknown
    assert re.search(r"\d+(\.\d)? (s|min) \+train", out)  # the enet baseline is trained first
    assert "no_such_method" in out  # the declaration that does not resolve is named
    assert not (tmp_path / "res" / "runs").exists()


def test_cells_come_from_the_records(ran):
    from bench.records import read_record

    t = engine.build(FAKE, ran)
    planned = {(p.row, p.column): p for p in engine.plan(FAKE, ran)}
    base = read_record(ran.results, planned[(0, "IoU")].spec.run_id)
    half = read_record(ran.results, planned[(0, "half")].spec.run_id)
    assert base["status"] == half["status"] == "ok"
    row = {h: c for h, c in zip(t.headers, t.rows[0])}
    assert row["IoU"].value == base["metrics"]["miou"]
    assert row["IoU"].text == f"{100 * base['metrics']['miou']:.1f}"
    assert row["fp16 [MB]"].value == half["metrics"]["size_bytes"]
    assert row["ratio"].value == pytest.approx(row["Dense [MB]"].value / row["fp16 [MB]"].value)
    assert 1.9 < row["ratio"].value < 2.05  # fp16 halves the dense fp32 weights
    # the test split is scored from the reloaded artifact, and cached
    assert 0.0 <= row["Test IoU"].value <= 1.0
    cached = list((ran.results / "cache" / "tables" / "evals").glob("*.json"))
    assert json.loads(cached[0].read_text())["split"] == "test"
    # gaps say why
    broken = {h: c for h, c in zip(t.headers, t.rows[1])}
    assert broken["IoU"].text == "failed"
    assert "no_such_kwarg" in t.footnotes[broken["IoU"].note - 1]
    assert row["nope"].text == "missing"
    assert "does not resolve" in t.footnotes[row["nope"].note - 1]


def test_a_not_applicable_run_is_a_gap_that_says_so_and_is_not_rerun(ran, monkeypatch):
    from bench.records import read_record

    planned = {(p.row, p.column): p for p in engine.plan(FAKE, ran)}
    broken_id = planned[(1, "IoU")].spec.run_id

    def read(results, run_id):
        rec = read_record(results, run_id)
        if run_id == broken_id:
            rec = dict(rec, status="not applicable", error="scope 'head' holds nothing")
        return rec

    import bench.runner

    monkeypatch.setattr(engine, "read_record", read)
    monkeypatch.setattr(bench.runner, "read_record", read)  # missing_specs resumes as it does
    t = engine.build(FAKE, ran)
    cell = {h: c for h, c in zip(t.headers, t.rows[1])}["IoU"]
    assert cell.text == "n/a"
    assert "not applicable: scope 'head' holds nothing" in t.footnotes[cell.note - 1]
    missing = {s.run_id for s in engine.missing_specs(engine.unique_specs(engine.plan(FAKE, ran)),
                                                      ran.results)}
    assert broken_id not in missing


def test_markdown_and_latex_files(ran):
    md, tex = engine.write(engine.build(FAKE, ran), ran.results / "tables")
    text = md.read_text()
    assert text.startswith("# [fake] A fake table")
    for needle in ("Dataset `synthetic`", "budget `smoke` with", "revision `abc123`",
                   "A note.", "| ENet", "failed ["):
        assert needle in text
    latex = tex.read_text()
    assert "\\toprule" in latex and "\\midrule" in latex and "\\bottomrule" in latex
    assert "\\label{tab:fake}" in latex and "\\begin{tabular}{lrrrrrrr}" in latex
    assert "failed\\textsuperscript{" in latex
    # every body row has one cell per column
    body = latex.split("\\midrule")[1].split("\\bottomrule")[0].strip().splitlines()
    assert all(line.count("&") == len(FAKE.columns) - 1 for line in body)


def test_no_train_fills_static_columns_without_any_run(tmp_path):
    opts = _opts(tmp_path / "res")
    t = engine.build(FAKE, opts, compute_evals=False, no_train=True)
    row = {h: c for h, c in zip(t.headers, t.rows[0])}
    assert row["Params [M]"].value > 300_000  # ENet: ~0.36 M parameters
    assert row["IoU"].text == "not run" and "--no-train" in t.footnotes[row["IoU"].note - 1]
    assert not (tmp_path / "res" / "runs").exists()


def test_static_counts_shared_kernels_once(tmp_path):
    """KSAC shares one kernel between atrous branches: the dense size stores it once."""
    from bench.tables.static import static_metrics

    kw = {"output_stride": 32}
    plain = static_metrics("deeplabv3plus_mobilenetv2", kw, 9, (64, 64), tmp_path)
    ksac = static_metrics("deeplabv3plus_mobilenetv2", {**kw, "ksac": True}, 9, (64, 64),
                          tmp_path)
    assert ksac["params"] < plain["params"] and ksac["madds"] == plain["madds"]
    assert ksac["dense_size"] < plain["dense_size"]
    assert ksac["flops"] == 2 * ksac["madds"]
    assert len(list(tmp_path.glob("*.json"))) == 2  # cached


def test_tables_command_exits_1_when_a_needed_run_failed(ran, tmp_path, monkeypatch):
    """The broken row's runs fail again on a re-run: the tables are written with empty
    cells and the exit status says a run failed (docs/reliability.md)."""
    import argparse
    import shutil

    from bench.tables import command

    results = tmp_path / "results"
    shutil.copytree(ran.results, results)
    monkeypatch.setattr(command, "select", lambda ids: [FAKE])
    args = argparse.Namespace(list=False, threads=None, table=None, dry_run=False,
                              no_train=False, executor="local", results=str(results),
                              budget="smoke", dataset="synthetic", data_root=None,
                              device="cpu", set=None)
    assert len(engine.tables_missing([FAKE], ran)) == 2  # the broken row: none and fp16
    assert command.run_command(args) == 1
    assert (results / "tables" / "fake.md").is_file()
    args.no_train = True  # nothing is run, nothing failed now
    assert command.run_command(args) == 0
