"""The committed reference is protected from a user's runs and re-checkable from its records."""

import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.layout import USER_RESULTS, ProtectedResultsError, guard_write

TINY = ["--model", "enet", "--budget", "smoke", "--set", "budget.train_images=16",
        "--set", "budget.eval_images=8", "--set", "budget.latency_runs=3"]
REF = "results/reference/synthetic-smoke"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A reference made the maintainers' way, once: a tiny grid with --update-reference."""
    root = tmp_path_factory.mktemp("repo")
    import os

    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["run", "--method", "none", *TINY, "--results", REF,
                     "--update-reference"]) == 0
    finally:
        os.chdir(cwd)
    return root


def _clone(reference, tmp_path, monkeypatch, artifacts=False):
    """What a fresh clone holds: the reference without its git-ignored folders (artifacts
    only when a test says a maintainer has them)."""
    repo = tmp_path / "clone"
    shutil.copytree(reference, repo)
    for ignored in ("cache", "logs", "tmp") + (() if artifacts else ("artifacts",)):
        shutil.rmtree(repo / REF / ignored, ignore_errors=True)
    monkeypatch.chdir(repo)
    return repo


def test_default_results_are_the_ignored_local_folder():
    assert USER_RESULTS.as_posix() == "results/local"
    ignored = (Path(__file__).parents[2] / ".gitignore").read_text().splitlines()
    assert "results/local/" in ignored


@pytest.mark.parametrize("command", [
    ["run", "--method", "none", *TINY],
    ["leaderboard"],
    ["plots"],
    ["tables", "--no-train"],
])
def test_writing_into_the_reference_without_the_flag_exits_2(command, tmp_path, monkeypatch,
                                                             capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--results", REF]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--update-reference" in err
    assert not (tmp_path / REF).exists()


def test_update_reference_pointed_elsewhere_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProtectedResultsError, match="writes only under"):
        guard_write(tmp_path / "mine", update_reference=True)
    guard_write(tmp_path / "mine", update_reference=False)  # a user's folder: fine


def test_a_users_run_leaves_the_reference_untouched(reference, tmp_path, monkeypatch):
    repo = _clone(reference, tmp_path, monkeypatch, artifacts=True)
    before = {p: p.read_bytes() for p in (repo / REF).rglob("*") if p.is_file()}
    assert main(["run", "--method", "fp16", *TINY]) == 0  # default --results
    assert (repo / "results/local/leaderboard.md").is_file()
    after = {p: p.read_bytes() for p in (repo / REF).rglob("*") if p.is_file()}
    assert after == before


def test_verify_reference_passes_on_what_the_records_produce(reference, tmp_path, monkeypatch,
                                                             capsys):
    _clone(reference, tmp_path, monkeypatch)
    assert main(["verify", "--reference"]) == 0
    assert "leaderboard regenerated: ok" in capsys.readouterr().err


def test_verify_reference_catches_an_edited_leaderboard(reference, tmp_path, monkeypatch,
                                                        capsys):
    repo = _clone(reference, tmp_path, monkeypatch)
    md = repo / REF / "leaderboard.md"
    md.write_text(md.read_text().replace("| enet ", "| enet*", 1))
    assert main(["verify", "--reference"]) == 1
    assert "leaderboard.md: differs from what its records regenerate" in capsys.readouterr().err


def test_verify_reference_catches_a_tampered_record(reference, tmp_path, monkeypatch, capsys):
    """Without artifacts, a record whose mIoU was edited regenerates another leaderboard."""
    import json

    repo = _clone(reference, tmp_path, monkeypatch)
    (rec_path,) = (repo / REF / "runs").glob("*.json")
    rec = json.loads(rec_path.read_text())
    rec["metrics"]["miou"] = 0.99
    rec_path.write_text(json.dumps(rec))
    assert main(["verify", "--reference"]) == 1
    assert "differs" in capsys.readouterr().err


def test_verify_reference_names_a_malformed_record(reference, tmp_path, monkeypatch, capsys):
    repo = _clone(reference, tmp_path, monkeypatch)
    (repo / REF / "runs" / "junk.json").write_text("[]")
    assert main(["verify", "--reference"]) == 1
    assert "runs/junk.json: malformed record" in capsys.readouterr().err


def test_verify_reference_reevaluates_present_artifacts(reference, tmp_path, monkeypatch,
                                                        capsys):
    """A record tampered consistently with its leaderboard is still caught by its artifact."""
    import json

    from bench.leaderboard import write_leaderboard

    repo = _clone(reference, tmp_path, monkeypatch, artifacts=True)
    (rec_path,) = (repo / REF / "runs").glob("*.json")
    rec = json.loads(rec_path.read_text())
    rec["metrics"]["miou"] = 0.99
    rec_path.write_text(json.dumps(rec))
    write_leaderboard(repo / REF)
    assert main(["verify", "--reference"]) == 1
    assert "mIoU" in capsys.readouterr().err


def test_no_reference_is_a_failure_not_an_empty_success(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["verify", "--reference"]) == 1
    assert "no reference results" in capsys.readouterr().err
