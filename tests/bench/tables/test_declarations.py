"""Every declared table resolves: its method names and settings exist in the installed
plugins, its model kwargs build, its columns name real metrics and formats. A renamed
plugin field breaks this test, not the table. No run and no model is built here except
where noted (spec resolution and hashing only)."""

from __future__ import annotations

import pytest
import torch

from bench.cli import main
from bench.tables import engine
from bench.tables.catalog import all_tables

ISSUE_IDS = ("dlv3p-r50-blocks", "dlv3p-mnv2-blocks", "dlv3p-r50-distill",
             "dlv3p-mnv2-distill", "dlv3p-r50-caspp", "dlv3p-mnv2-caspp", "rt-cost",
             "rt-accuracy", "rt-loss", "edge-size", "efficient-tradeoff")


def test_every_table_of_the_issue_is_declared_once():
    assert tuple(all_tables()) == ISSUE_IDS


@pytest.mark.parametrize("table_id", ISSUE_IDS)
def test_declaration_is_consistent(table_id):
    assert engine.check_declaration(all_tables()[table_id]) == []


@pytest.mark.parametrize("budget", ["smoke", "quick", "full"])
def test_every_cell_resolves_to_a_run_spec(budget, tmp_path):
    opts = engine.Options(budget=budget, results=tmp_path, device=torch.device("cpu"))
    for t in all_tables().values():
        for p in engine.plan(t, opts):
            assert p.spec is not None, f"{t.id}: {p.error}"
            assert p.spec.budget.name == budget


def test_row_counts_follow_the_issue():
    t = all_tables()
    assert len(t["dlv3p-r50-blocks"].rows) == 2 * 2 * 3  # OS x KSAC x block
    assert len(t["dlv3p-mnv2-caspp"].rows) == 2 * 2 * 5  # OS x KSAC x decoder
    assert len(t["rt-cost"].rows) == 5 and len(t["rt-loss"].rows) == 4
    assert len(t["efficient-tradeoff"].rows) == 3 * 6  # model x strategy
    kw = {tuple(sorted(r.model_kwargs.items())) for r in t["dlv3p-r50-caspp"].rows}
    assert len(kw) == 20  # every row a distinct model variant


def test_smoke_overrides_are_shared_so_baselines_are_too(tmp_path):
    """The teacher baseline of rt-loss is the teacher row of rt-cost: same run id."""
    opts = engine.Options(budget="smoke", results=tmp_path, device=torch.device("cpu"))
    t = all_tables()
    teacher_row = engine.plan(t["rt-cost"], opts)[0].spec
    dlv3p = [p.spec for p in engine.plan(t["dlv3p-r50-blocks"], opts)]
    assert teacher_row.budget == dlv3p[0].budget
    assert teacher_row.budget.train_images == 8  # the CI-sized smoke budget


def test_real_dataset_columns_appear_only_when_asked():
    t = all_tables()["rt-accuracy"]
    assert len(t.columns_for({"real_dataset": None})) == 3
    assert len(t.columns_for({"real_dataset": "camvid"})) == 5


def test_list_prints_every_id(capsys):
    assert main(["tables", "--list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == list(ISSUE_IDS)


@pytest.mark.parametrize("args, needle", [
    (["tables", "--table", "nope"], "unknown table 'nope'; valid choices: dlv3p-r50-blocks"),
    (["tables", "--set", "colour=red"], "--set colour: not a tables setting; valid:"),
    (["tables", "--set", "budget.nope=1"], "unknown budget field"),
    (["tables", "--set", "train.loss=l2"], "bad setting train.loss='l2'; valid: one of ce"),
    (["tables", "--set", "real_dataset=mnist"], "unknown dataset 'mnist'"),
])
def test_bad_options_exit_2_with_one_line(args, needle, capsys, tmp_path):
    assert main([*args, "--results", str(tmp_path), "--no-train"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_gpu_tables_below_their_budget_are_marked_not_filled(tmp_path):
    """At `quick`, the DeepLabV3+ tables plan no runs and say what their cells need, while
    the cost columns (no training) are still filled."""
    opts = engine.Options(budget="quick", results=tmp_path, device=torch.device("cpu"))
    t = all_tables()["dlv3p-mnv2-caspp"]
    assert t.needs_budget == "full" and engine.plan(t, opts) == []
    rendered = engine.build(t, opts, compute_evals=False, no_train=True)
    iou = rendered.headers.index("IoU")
    params = rendered.headers.index("Params [M]")
    assert {row[iou].text for row in rendered.rows} == {"needs full"}
    assert all(row[params].value for row in rendered.rows)
    assert "--budget full --dry-run" in " ".join(rendered.footnotes)
    full = engine.Options(budget="full", results=tmp_path, device=torch.device("cpu"))
    assert len(engine.plan(t, full)) == len(t.rows)
