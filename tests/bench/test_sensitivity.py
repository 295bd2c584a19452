"""The per-layer sensitivity analysis: one layer pruned at a time, evaluated without
fine-tuning, written as CSV + PNG next to the results."""

from __future__ import annotations

import csv

import pytest
import torch

from bench.registry import UnknownNameError
from bench.sensitivity import COLUMNS, main, run_sensitivity


@pytest.fixture(scope="module")
def shared_results(tmp_path_factory):
    return tmp_path_factory.mktemp("sensitivity-results")  # one baseline for the module


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_unstructured_sweep_writes_csv_and_plot(shared_results, tiny_budget):
    path = run_sensitivity("enet", "prune_unstructured", shared_results, tiny_budget,
                           torch.device("cpu"), [0.0, 0.5, 0.95],
                           layers=["net.stage1.0.branch.*"])
    rows = _rows(path)
    assert list(rows[0]) == COLUMNS
    layers = {r["layer"] for r in rows}
    assert layers == {"net.stage1.0.branch.0.0", "net.stage1.0.branch.1.0",
                      "net.stage1.0.branch.2.0"}
    assert len(rows) == 9
    assert {r["eval_images"] for r in rows} == {str(tiny_budget.eval_images)}  # all of val
    for r in rows:
        n, s, achieved = int(r["weights"]), float(r["sparsity"]), float(r["achieved"])
        assert abs(achieved * n - round(s * n)) < 1e-3  # exactly round(s * n) zeroed
        if s == 0.0:  # nothing pruned: exactly the baseline
            assert float(r["miou"]) == float(r["baseline_miou"])
            assert float(r["delta_miou"]) == 0.0
    assert any(float(r["delta_miou"]) != 0.0 for r in rows if float(r["sparsity"]) == 0.95)
    png = path.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_structured_sweep_prunes_one_group(shared_results, tiny_budget):
    path = run_sensitivity("enet", "prune_structured", shared_results, tiny_budget, "cpu",
                           [0.5], layers=["net.stage1.0.branch.0.0"])
    (row,) = _rows(path)
    assert row["layer"] == "net.stage1.0.branch.0.0" and float(row["achieved"]) == 0.5
    assert row["error"] == "" and 0.0 <= float(row["miou"]) <= 1.0


def test_bad_input_is_reported(shared_results, tiny_budget, capsys):
    with pytest.raises(UnknownNameError, match="prune_unstructured or prune_structured"):
        run_sensitivity("enet", "kmeans", shared_results, tiny_budget, "cpu", [0.5])
    assert main(["--model", "enet", "--budget", "smoke", "--results", str(shared_results),
                 "--sparsities", "1.5"]) == 2
    assert "sparsities must be numbers in [0, 1)" in capsys.readouterr().err
    assert main(["--", "--model", "enet", "--budget", "smoke", "--set", "epochs=3"]) == 2
    assert "budget.* overrides only" in capsys.readouterr().err


def test_help_through_the_cli(capsys):
    """`segbench sensitivity --help` prints the sensitivity options (argparse's REMAINDER
    used to swallow a leading flag and print the top-level usage instead)."""
    from bench.cli import main as cli_main

    with pytest.raises(SystemExit) as e:
        cli_main(["sensitivity", "--help"])
    assert e.value.code == 0
    assert "--sparsities" in capsys.readouterr().out


def test_refuses_the_committed_reference(capsys):
    from bench.cli import main as cli_main

    code = cli_main(["sensitivity", "--model", "enet", "--budget", "smoke",
                     "--results", "results/reference/synthetic-quick"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "committed reference" in err[0]
