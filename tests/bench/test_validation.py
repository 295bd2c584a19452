"""Bad values fail up front: exit 2, one line naming the value and what is valid, before
any run starts (nothing written under --results), never mid-grid or as a traceback."""

from __future__ import annotations

import pytest

from bench.cli import main


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "--model", "enet", "--set", "model.bogus=1"],
         "model enet cannot be built with model.bogus=1: TypeError"),
        (["run", "--model", "deeplabv3plus_mobilenetv2", "--set", "model.output_stride=7"],
         "output_stride must be 8, 16 or 32, got 7"),
        (["run", "--model", "enet", "--set", "budget.batch_size=0"],
         "bad setting budget.batch_size=0; valid: an integer >= 1"),
        (["run", "--model", "enet", "--set", "budget.lr=NaN"],
         "bad setting budget.lr=nan; valid: a number > 0"),
        (["run", "--model", "enet", "--set", "budget.epochs=1.5"],
         "bad setting budget.epochs=1.5; valid: an integer >= 1"),
        (["run", "--model", "enet", "--set", "budget.eval_images=0"],
         "bad setting budget.eval_images=0; valid: null or an integer >= 1"),
        (["run", "--model", "enet", "--set", "train.momentum=abc"],
         "bad setting train.momentum='abc'; valid: a number in [0, 1)"),
        (["run", "--model", "enet", "--set", "train.optimizer=lamb"],
         "bad setting train.optimizer='lamb'; valid: one of adam, sgd"),
        (["run", "--model", "enet", "--set", "budget.scale_min=-1"],
         "bad setting budget.scale_min=-1; valid: null or a number > 0"),
        (["run", "--model", "enet", "--set", "train.amp=2"],
         "bad setting train.amp=2; valid: true or false"),
        (["run", "--model", "enet", "--method", "prune_unstructured+prune_unstructured"],
         "pipeline 'prune_unstructured+prune_unstructured' runs prune_unstructured more than "
         "once"),
        (["tables", "--set", "budget.lr=NaN"], "bad setting budget.lr=nan; valid: a number > 0"),
        (["tables", "--set", "train.weight_decay=-1"],
         "bad setting train.weight_decay=-1; valid: a number >= 0"),
    ],
)
def test_bad_settings_exit_2_before_any_work(args, needle, tmp_path, capsys):
    results = tmp_path / "res"
    assert main([*args, "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and err.startswith("segbench: error:")
    assert not results.exists()


def test_good_model_settings_pass_the_check(tmp_path):
    from bench import validate

    assert validate.model_kwargs_problem("deeplabv3plus_mobilenetv2",
                                         {"output_stride": 16}, 21) is None


@pytest.mark.parametrize("command", ["run", "tables", "leaderboard", "plots"])
def test_results_that_is_a_file_exits_2(command, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    for results, needle in ((f, "is a file, not a directory"),
                            (f / "sub", f"lies under {f}, which is a file")):
        assert main([command, "--results", str(results)]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("size", ["bogus", "0x0", "12x", "-3x4"])
def test_zoo_bad_size_exits_2(size, capsys):
    assert main(["zoo", f"--size={size}", "--model", "enet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--size expects HxW with H, W >= 1" in err and len(err.splitlines()) == 1


def test_zoo_good_size_still_works(capsys):
    assert main(["zoo", "--size", "32X48", "--model", "enet", "--num-classes", "3"]) == 0
    assert "enet" in capsys.readouterr().out
