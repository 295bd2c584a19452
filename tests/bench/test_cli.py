import subprocess
import sys

import pytest

from bench.cli import main


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "--method", "nope", "--model", "enet"], "unknown method 'nope'; valid choices:"),
        (["run", "--method", "none", "--model", "nomodel"], "unknown model 'nomodel'; valid"),
        (["run", "--method", "none", "--dataset", "mnist"], "unknown dataset 'mnist'; valid"),
        (["run", "--method", "none", "--budget", "huge"], "unknown budget 'huge'; valid"),
        (["run", "--method", "none", "--set", "train.optimizer=rmsprop"],
         "bad setting train.optimizer='rmsprop'; valid: one of adam, sgd"),
        (["run", "--method", "none", "--set", "budget.nope=1"], "unknown budget field"),
        (["run", "--method", "none", "--set", "noequals"], "--set expects key=value"),
        (["run", "--method", "none", "--set", "budget.epochs=abc"],
         "bad setting budget.epochs='abc'; valid: an integer"),
        (["run", "--method", "none", "--set", "train.amp=2"],
         "bad setting train.amp=2; valid: true or false"),
    ],
)
def test_bad_input_exits_2_with_one_line_listing_choices(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1


def test_real_dataset_without_root_fails_with_expected_layout(tmp_path, capsys):
    rc = main(["run", "--method", "none", "--model", "enet", "--dataset", "camvid",
               "--budget", "smoke", "--results", str(tmp_path)])
    assert rc == 1  # the grid finishes, the run is recorded as failed, the exit says so
    lb = (tmp_path / "leaderboard.md").read_text()
    assert "## failed, not applicable and stale runs" in lb and "--data-root" in lb


def test_list_prints_registries(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("enet", "unet_small", "none", "synthetic", "camvid", "smoke"):
        assert word in out


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "bench", "list", "budgets"],
                         capture_output=True, text=True, check=True)
    assert "quick" in out.stdout


def test_smoke_run_then_leaderboard(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["run", "--method", "none", "--model", "enet", "--budget", "smoke",
               "--set", "budget.train_images=16", "--set", "budget.eval_images=8",
               "--set", "budget.latency_runs=3", "--results", "res"])
    assert rc == 0
    assert main(["leaderboard", "--results", "res"]) == 0
    md = (tmp_path / "res" / "leaderboard.md").read_text()
    assert "| enet " in md and "none" in md
    csv = (tmp_path / "res" / "leaderboard.csv").read_text().splitlines()
    assert csv[0].startswith("dataset,budget,model,method") and len(csv) == 2


def test_the_summary_says_which_runs_were_resumed(tmp_path, capsys):
    """A second grid that reuses a finished baseline says so, rather than counting it as
    a run it made."""
    args = ["run", "--model", "enet", "--budget", "smoke", "--set", "budget.train_images=16",
            "--set", "budget.eval_images=8", "--set", "budget.latency_runs=3",
            "--results", str(tmp_path)]
    assert main([*args, "--method", "none"]) == 0
    assert "(" not in capsys.readouterr().err.splitlines()[-1]
    assert main([*args, "--method", "fp16"]) == 0
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("2 runs ok, 0 failed (1 of them finished earlier, resumed)")
