"""`python -m bench plots` on four tiny ENet runs (baseline, gradual pruning, attention
transfer alone and after cheapconv): every figure kind is drawn as PNG + PDF from the real
records and artifacts."""

from __future__ import annotations

import argparse

import pytest
import torch
from PIL import Image

from bench.plots import main
from bench.plots.pareto import pareto_front

TINY = {"train_images": 16, "eval_images": 4, "latency_runs": 3, "latency_warmup": 1,
        "batch_size": 8, "calibration_images": 8, "finetune_epochs": 2}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from bench.budgets import get_budget
    from bench.method import expand_methods
    from bench.runner import run_grid
    from bench.spec import RunSpec

    results = tmp_path_factory.mktemp("plots") / "results"
    budget = get_budget("smoke", TINY)
    specs = []
    for method, sets in (("none", {}),
                         ("prune_unstructured", {"sparsity": 0.6, "schedule": "gradual",
                                                 "frequency": 1}),
                         ("at", {"layers": "output"}),
                         ("cheapconv+at", {"layers": "output"})):
        (v,) = expand_methods(method, sets)
        specs.append(RunSpec("enet", v.spec, v.label, v.resolved(), "synthetic", budget, 0))
    recs = run_grid(specs, results=results, device=torch.device("cpu"))
    assert all(r["status"] == "ok" for r in recs), [r.get("error") for r in recs]
    return results


def _args(results, model="", kind="", data_root=None):
    return argparse.Namespace(results=str(results), model=model, kind=kind, data_root=data_root)


def test_pareto_front_keeps_only_undominated_points():
    pts = [(1.0, 50.0), (2.0, 60.0), (3.0, 55.0), (0.5, 40.0), (2.0, 58.0)]
    assert pareto_front(pts) == [(0.5, 40.0), (1.0, 50.0), (2.0, 60.0)]


def test_every_figure_kind_is_drawn(results, monkeypatch):
    from bench.plots import sensitivity

    monkeypatch.setattr(sensitivity, "SAMPLE_LAYERS", 3)  # keep the test to seconds
    monkeypatch.setattr(sensitivity, "SPARSITIES", (0.5, 0.9))
    assert main(_args(results)) == 0
    out = results / "plots"
    names = sorted(p.name for p in out.glob("*.png"))
    prefixes = {n.split("-")[0] for n in names}
    assert prefixes == {"pareto", "sparsity", "attention", "predictions", "confusion",
                        "sensitivity"}
    # one attention figure per pipeline: `cheapconv+at` is not folded into `at`'s
    attention = [n for n in names if n.startswith("attention-")]
    assert len(attention) == 2
    assert sum(n.startswith("attention-enet-cheapconv_at-output-") for n in attention) == 1
    for png in out.glob("*.png"):
        assert png.with_suffix(".pdf").stat().st_size > 1000
        w, h = Image.open(png).size
        assert w >= 600 and h >= 300  # readable, not a thumbnail
    # the sensitivity analysis behind its figure was run through bench/sensitivity.py
    assert (results / "sensitivity" / "enet-prune_unstructured-smoke.csv").is_file()


def test_kind_draws_only_the_figure_kinds_named(tmp_path, results):
    import shutil

    from bench.registry import UnknownNameError

    copy = tmp_path / "results"
    shutil.copytree(results / "runs", copy / "runs")  # the Pareto fronts need only records
    assert main(_args(copy, kind="pareto")) == 0
    assert {p.name.split("-")[0] for p in (copy / "plots").glob("*.png")} == {"pareto"}
    with pytest.raises(UnknownNameError, match="unknown figure kind.* paretto; valid choices: "
                                               "pareto, sparsity, attention"):
        main(_args(copy, kind="paretto"))


def test_unknown_model_and_empty_results(tmp_path, results, capsys):
    from bench.registry import UnknownNameError

    with pytest.raises(UnknownNameError, match="unknown model 'nope'"):
        main(_args(results, "nope"))
    assert main(_args(tmp_path)) == 1
    assert "no finished runs" in capsys.readouterr().err


def test_pareto_markers_tell_method_families_apart():
    from bench.plots.pareto import family_marker

    assert family_marker("kd") == family_marker("at") == family_marker("cwd [train loss=iou]")
    assert family_marker("prune_unstructured") != family_marker("kmeans")
    assert family_marker("cheapconv+at") == family_marker("cheapconv") != family_marker("at")
    assert family_marker("deep_compression") == family_marker("no_such_plugin") == "h"


def test_confusion_figure_is_the_recorded_evaluation(results):
    """The matrix the figure draws, recomputed from the reloaded artifact, scores exactly
    the mIoU the run recorded; rows are normalised per true class."""
    from bench.evaluate import scores
    from bench.plots import confusion, loading
    from bench.plots import records as R

    recs = R.ok_records(results, ["enet"])
    base, worst = confusion.pick_runs(recs)
    assert base["method"] == "none" and worst["metrics"]["miou"] < base["metrics"]["miou"]
    assert worst["metrics"]["miou"] == min(r["metrics"]["miou"] for r in recs)
    ctx = loading.run_context(base, results)
    _, predict = loading.reloaded(base, results, ctx)
    conf = confusion.confusion(predict, ctx.eval_batches("val"), ctx.num_classes,
                               ctx.ignore_index, torch.device("cpu"))
    assert scores(conf)["miou"] == base["metrics"]["miou"]
    m, names = confusion.row_normalised(base, results)
    assert len(names) == ctx.num_classes
    present = conf.sum(1) > 0
    assert torch.allclose(m.sum(1)[present], torch.ones(int(present.sum()), dtype=m.dtype))


def test_figures_find_a_real_dataset_where_the_run_recorded_it(tmp_path, monkeypatch):
    from bench.plots import loading

    rec = {"data_root": {"given": "x", "resolved": str(tmp_path)}}
    assert loading.data_root(rec) == tmp_path
    assert loading.data_root({"data_root": {"resolved": str(tmp_path / "gone")}}) is None
    assert loading.data_root({}) is None  # synthetic
    monkeypatch.setattr(loading, "DATA_ROOT", tmp_path / "here")  # `plots --data-root`
    assert loading.data_root(rec) == tmp_path / "here"
