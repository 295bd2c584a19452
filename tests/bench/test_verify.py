import json

import pytest

from bench.cli import main
from bench.registry import UnknownNameError
from bench.verify import select_records, verify_results


@pytest.fixture
def two_runs(make_spec, run_spec, results):
    """A tiny baseline and an fp16 run of it, both ok, in `results`."""
    recs = [run_spec(make_spec("none")), run_spec(make_spec("fp16"))]
    assert all(r["status"] == "ok" for r in recs), [r.get("error") for r in recs]
    return recs


def test_run_prefix_selects_one_run_and_an_unknown_one_names_the_choices(two_runs, results):
    base, fp16 = two_runs
    assert [r["run_id"] for r in select_records(results, [fp16["run_id"][:6]])] == \
        [fp16["run_id"]]
    assert len(select_records(results)) == 2
    with pytest.raises(UnknownNameError, match=base["run_id"]):
        select_records(results, ["zzzz"])
    assert verify_results(results, runs=[fp16["run_id"]]) == {}


def test_verify_cli_fails_a_run_whose_recorded_miou_is_wrong_and_checks_only_that_run(
        two_runs, results, capsys):
    base, fp16 = two_runs
    path = results / "runs" / f"{fp16['run_id']}.json"
    rec = json.loads(path.read_text())
    rec["metrics"]["miou"] += 0.01
    path.write_text(json.dumps(rec))
    args = ["verify", "--results", str(results)]
    assert main([*args, "--run", base["run_id"]]) == 0
    assert "verified 1/1" in capsys.readouterr().err
    assert main([*args, "--run", fp16["run_id"]]) == 1
    assert "mIoU" in capsys.readouterr().err
    assert main([*args, "--run", "nope"]) == 2


def test_reevaluation_runs_at_the_recorded_thread_count_and_restores_the_callers(monkeypatch):
    """A 1-thread run re-evaluated at 2 threads differed in the 7th digit of its mIoU."""
    import torch

    from bench.verify import evaluate_as_recorded

    seen = []

    class Ctx:
        def evaluate(self, predict, desc):
            seen.append(torch.get_num_threads())
            return {"miou": 0.5}

    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    assert evaluate_as_recorded(Ctx(), None, {"run_id": "r", "env": {"threads": other}}) == 0.5
    assert evaluate_as_recorded(Ctx(), None, {"run_id": "r"}) == 0.5  # older record: as set
    assert seen == [other, before] and torch.get_num_threads() == before
