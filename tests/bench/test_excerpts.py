"""The results quoted in the docs are what the committed references' records generate."""

import time
from pathlib import Path

import pytest

from bench.cli import main
from bench.data.synthetic import VERSION
from bench.excerpts import (
    Selection,
    check,
    default_files,
    find_blocks,
    parse_marker,
    select_rows,
)
from bench.layout import REFERENCE_ROOT
from bench.leaderboard import build_rows, write_leaderboard
from bench.records import iter_records, write_record
from bench.reference import verify_reference

REPO = Path(__file__).parents[2]
REF = "fix-quick"


def test_every_excerpt_in_the_repo_docs_is_current(monkeypatch, capsys):
    """The guard that keeps README.md and docs/*.md from drifting from the reference: it
    reads run records only (JSON), so it stays fast as the reference grows."""
    monkeypatch.chdir(REPO)
    from bench.method import METHODS
    from models import MODELS

    METHODS.names(), MODELS.names()  # the registries' imports, paid once per session

    start = time.perf_counter()
    problems, n = check(default_files(), REFERENCE_ROOT)
    took = time.perf_counter() - start
    assert not problems, "\n".join(problems)
    assert n >= 1, "README.md quotes the reference through excerpt blocks"
    print(f"{n} excerpt blocks checked in {took:.2f} s")


def _rec(run_id, model, label, miou, stages, base_id):
    """A minimal ok record in a reference: `stages` is [(method, config)]."""
    return {
        "run_id": run_id, "status": "ok", "model": model, "method": "+".join(
            m for m, _ in stages), "label": label, "dataset": "synthetic",
        "budget": "quick", "seed": 0, "baseline_run_id": base_id,
        "env": {"device": "cpu", "threads": 1},
        "config": {"model": model, "method": label, "seed": 0, "dataset": "synthetic",
                   "dataset_version": VERSION, "budget": {"name": "quick", "epochs": 2,
                                                          "crop_size": 32},
                   "stages": [{"method": m, "version": 1, "config": c} for m, c in stages]},
        "metrics": {"miou": miou, "pixel_acc": 0.9, "params": 1000, "nonzero_params": 1000,
                    "sparsity": 0.0, "size_bytes": 4000, "compression_ratio": 1.0,
                    "madds": 5000, "effective_madds": 5000, "latency_ms": 3.0,
                    "latency_iqr_ms": 0.2, "latency_paired": True, "speedup": 1.25,
                    "speedup_iqr": 0.05, "runtime": "torch"},
    }


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository with a tiny reference (an ENet baseline and a pruned row, its
    leaderboard committed) and a doc that quotes it; the cwd is its root."""
    ref = tmp_path / "results" / "reference" / REF
    write_record(ref, _rec("base", "enet", "none", 0.600, [("none", {})], "base"))
    write_record(ref, _rec("prun", "enet", "prune_structured", 0.574,
                           [("prune_structured", {"ratio": 0.5})], "base"))
    write_leaderboard(ref)
    monkeypatch.chdir(tmp_path)
    return tmp_path


DOC = f"""# doc

prose kept as it is

<!-- excerpt: {REF} models=enet methods=none,prune_structured expect=prune -->
hand-copied figures
<!-- /excerpt -->

```
<!-- excerpt: an example in fenced code, never parsed -->
```

<!-- excerpt: {REF} models=unet_small -->
<!-- /excerpt -->

tail prose
"""


def test_update_then_check_round_trip(repo, capsys):
    doc = repo / "doc.md"
    doc.write_text(DOC)
    assert main(["excerpts", "--check", "doc.md"]) == 1
    err = capsys.readouterr().err
    assert "doc.md:5: excerpt" in err and "doc.md:13: excerpt" in err
    assert "make docs-results" in err

    assert main(["excerpts", "--update", "doc.md"]) == 0
    text = doc.read_text()
    assert "hand-copied" not in text
    assert text.startswith("# doc\n\nprose kept as it is\n") and text.endswith("tail prose\n")
    rows = [line for line in text.splitlines() if line.startswith("| enet")]
    assert len(rows) == 2 and "57.4" in rows[1] and "-2.6" in rows[1]  # mIoU, ΔmIoU
    assert f"No rows yet in `results/reference/{REF}`" in text  # the unet_small block
    assert "2 rows from 2 run records" in text
    missing = next(line for line in text.splitlines() if line.startswith("Not yet"))
    assert "of `METHOD=prune`: enet: " in missing
    items = missing.split(": ", 2)[2].rstrip(".").split(", ")
    assert "prune_unstructured sparsity=0.9" in items
    assert "prune_structured ratio=0.5,importance=fpgm" in items
    assert "prune_structured ratio=0.5" not in items  # it has a row

    capsys.readouterr()
    assert main(["excerpts", "--check", "doc.md"]) == 0
    assert "2/2 blocks current" in capsys.readouterr().err
    before = doc.stat().st_mtime_ns
    assert main(["excerpts", "--update", "doc.md"]) == 0
    assert doc.stat().st_mtime_ns == before  # nothing stale: nothing rewritten


def test_a_growing_reference_makes_its_blocks_stale(repo, capsys):
    doc = repo / "doc.md"
    doc.write_text(DOC)
    assert main(["excerpts", "--update", "doc.md"]) == 0
    ref = repo / "results" / "reference" / REF
    write_record(ref, _rec("ubas", "unet_small", "none", 0.700, [("none", {})], "ubas"))
    assert main(["excerpts", "--check", "doc.md"]) == 1
    err = capsys.readouterr().err
    assert "excerpt `fix-quick models=unet_small` differs" in err  # its rows changed
    assert "doc.md:5:" not in err  # the enet rows did not: that block stays as it is
    assert main(["excerpts", "--update", "doc.md"]) == 0
    text = doc.read_text()
    assert "No rows yet" not in text and "| unet_small | none" in text
    assert "1 row from 1 run record)" in text


def test_rows_keep_the_leaderboards_cells(repo):
    """A quoted row is the leaderboard's row: selection never changes a cell."""
    doc = repo / "doc.md"
    doc.write_text(f"<!-- excerpt: {REF} -->\n<!-- /excerpt -->\n")
    assert main(["excerpts", "--update", "doc.md"]) == 0

    def cells(text):
        return [[c.strip() for c in line.split("|")] for line in text.splitlines()
                if line.startswith("| enet")]

    board = (repo / "results" / "reference" / REF / "leaderboard.md").read_text()
    assert cells(doc.read_text()) == cells(board) and len(cells(board)) == 2


def test_selection_by_method_and_family(repo):
    rows, _ = build_rows(Path("results/reference") / REF)
    by = {(k, v) for k in ("methods", "families") for v in ("none", "prune")}
    picked = {kv: [r["method"] for r in select_rows(rows, Selection(REF, **{kv[0]: (kv[1],)}))]
              for kv in by}
    assert picked[("methods", "none")] == ["none"]
    assert picked[("families", "prune")] == ["prune_structured"]
    assert picked[("methods", "prune")] == []  # a method cell, not a family
    assert len(select_rows(rows, Selection(REF))) == 2


def test_only_keeps_the_rows_of_a_grids_configurations(repo):
    """`only=` quotes a fixed grid: a row of another configuration of the same method (the
    default prune_structured is ratio 0.25; the reference's row is 0.5) is left out."""
    ref = Path("results/reference") / REF
    rows, _ = build_rows(ref)
    records = {r["run_id"]: r for r in iter_records(ref)}

    def picked(only):
        return [r["method"] for r in select_rows(rows, Selection(REF, only=only), records)]

    assert picked("headline") == ["none", "prune_structured"]
    assert picked("none,prune_structured") == ["none"]
    assert picked("none") == ["none"]


def test_parse_marker_reads_every_key(repo):
    sel = parse_marker(f" {REF} models=enet,unet_small methods=none,prune_structured+kd "
                       "families=quant table=deployment expect=headline only=prune ", "x.md:1")
    assert sel == Selection(REF, ("enet", "unet_small"), ("none", "prune_structured+kd"),
                            ("quant",), "deployment", "headline", "prune")
    assert parse_marker(f"{REF}", "x.md:1") == Selection(REF)


@pytest.mark.parametrize("doc, problem", [
    ("<!-- excerpt: nope -->\n<!-- /excerpt -->\n", "unknown reference 'nope'; valid: fix-quick"),
    ("<!-- excerpt: models=enet -->\n<!-- /excerpt -->\n", "names no reference"),
    (f"<!-- excerpt: {REF} model=enet -->\n<!-- /excerpt -->\n", "unknown key 'model'"),
    (f"<!-- excerpt: {REF} models -->\n<!-- /excerpt -->\n", "is not key=value"),
    (f"<!-- excerpt: {REF} table=all -->\n<!-- /excerpt -->\n", "unknown table 'all'"),
    (f"<!-- excerpt: {REF} models=enett -->\n<!-- /excerpt -->\n", "unknown model 'enett'"),
    (f"<!-- excerpt: {REF} methods=prun -->\n<!-- /excerpt -->\n", "unknown method 'prun'"),
    (f"<!-- excerpt: {REF} families=prun -->\n<!-- /excerpt -->\n", "unknown family 'prun'"),
    (f"<!-- excerpt: {REF} expect=prun -->\n<!-- /excerpt -->\n", "expect=prun"),
    (f"<!-- excerpt: {REF} models=enet models=enet -->\n<!-- /excerpt -->\n", "given twice"),
    (f"x\n<!-- excerpt: {REF} -->\ntable\n", "doc.md:2: excerpt never closed"),
    ("<!-- /excerpt -->\n", "doc.md:1: <!-- /excerpt --> closes no excerpt"),
    (f"<!-- excerpt: {REF} -->\n<!-- excerpt: {REF} -->\n<!-- /excerpt -->\n",
     "doc.md:2: excerpt opened inside the one opened at line 1"),
])
def test_a_bad_marker_is_one_line_and_exit_2(repo, capsys, doc, problem):
    (repo / "doc.md").write_text(doc)
    good = repo / "a-good.md"  # read first, and must not be rewritten by --update
    good.write_text(f"<!-- excerpt: {REF} -->\nstale\n<!-- /excerpt -->\n")
    for mode in ("--check", "--update"):
        assert main(["excerpts", mode, "a-good.md", "doc.md"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and problem in err, err
    assert "stale" in good.read_text()


def test_markers_in_fenced_code_are_not_blocks():
    lines = ["```", "<!-- excerpt: nope -->", "```", "~~~md", "<!-- /excerpt -->", "~~~"]
    assert find_blocks(Path("x.md"), lines) == []


def test_verify_reference_fails_on_a_stale_excerpt(repo, capsys):
    (repo / "README.md").write_text(f"<!-- excerpt: {REF} -->\nold\n<!-- /excerpt -->\n")
    assert verify_reference(Path("results/reference")) == 1
    err = capsys.readouterr().err
    assert "FAIL docs: README.md:1: excerpt" in err
    assert main(["excerpts", "--update"]) == 0  # the default files: README.md, docs/*.md
    capsys.readouterr()
    assert verify_reference(Path("results/reference")) == 0
    assert "1 excerpt block(s) of the references, all current" in capsys.readouterr().err
