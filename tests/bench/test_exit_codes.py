"""The exit-status contract of docs/reliability.md: 0 all ok (not applicable counts as ok),
1 some run or check failed, 2 usage error; every subcommand's --help states it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bench.cli import main
from bench.config import Settings
from bench.method import METHODS, Method, NotApplicable, register_method

SMOKE = ["--budget", "smoke", "--set", "budget.train_images=16", "--set",
         "budget.eval_images=8", "--set", "budget.latency_runs=3"]


@pytest.fixture(scope="module")
def never_applies():
    METHODS.names()

    @register_method("_test_never_applies", family="_test")
    class NeverApplies(Method):
        @dataclass
        class Config(Settings):
            pass

        def compress(self, ctx, model):
            raise NotApplicable("this test method applies to no model")

    yield NeverApplies
    METHODS._items.pop("_test_never_applies")


def test_run_exits_1_when_a_run_failed(tmp_path, capsys):
    rc = main(["run", "--method", "none", "--model", "enet", "--dataset", "camvid",
               "--budget", "smoke", "--results", str(tmp_path)])
    assert rc == 1
    assert "0 runs ok, 1 failed" in capsys.readouterr().err


def test_run_exits_0_when_runs_are_ok_or_not_applicable(tmp_path, never_applies, capsys):
    rc = main(["run", "--method", "none,_test_never_applies", "--model", "enet", *SMOKE,
               "--results", str(tmp_path)])
    assert rc == 0
    assert "1 runs ok, 1 not applicable, 0 failed" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "verify", "tables", "plots", "leaderboard"])
def test_every_help_states_the_exit_status_contract(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "exit status:" in out and "2  usage error" in out and "not applicable" in out


@pytest.mark.parametrize("command", ["run", "tables"])
@pytest.mark.parametrize("threads", ["0", "-1"])
def test_threads_below_1_is_a_usage_error(command, threads, tmp_path, capsys):
    assert main([command, "--threads", threads, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"segbench: error: --threads must be an integer >= 1, got {threads}"
    assert not (tmp_path / "runs").exists()
