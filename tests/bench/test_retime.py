"""`bench retime` (bench/retime.py): a finished run timed again from its artifact changes
its timing fields only, keeps what they were, never trains, and selects by revision."""

import json
import shutil
import subprocess

import pytest

from bench.cli import main
from bench.records import read_record
from bench.retime import RetimeError, retime_record, timed_before


def test_a_retimed_record_keeps_everything_but_its_timing(make_spec, run_spec, results):
    rec = run_spec(make_spec("fp16", "enet"))
    assert rec["status"] == "ok", rec.get("error")
    rec["metrics"]["speedup"] = 9.99  # a timing that was wrong
    new = retime_record(rec, results)
    assert new["metrics"]["speedup"] != 9.99 and new["metrics"]["latency_paired"]
    assert new["metrics"]["latency_denormals_flushed"] is True
    assert new["retimed"]["previous"]["speedup"] == 9.99
    assert new["retimed"]["git_revision"] is not None or shutil.which("git") is None
    import torch

    from bench.latency import measure_paired

    timing = set(measure_paired(lambda x: x, lambda x: x, (1, 1), torch.device("cpu"), runs=2,
                                warmup=0))  # the fields a timing writes
    untouched = {k: v for k, v in rec["metrics"].items() if k not in timing}
    assert {k: new["metrics"][k] for k in untouched} == untouched  # mIoU, bytes, MAdds
    for key in ("run_id", "config", "artifact_sha256", "cost", "timings", "env"):
        assert new[key] == rec[key]
    again = retime_record(new, results)  # a second retime keeps the first in its history
    assert again["retimed"]["history"][0]["previous"]["speedup"] == 9.99


def test_retime_never_trains_a_missing_baseline(make_spec, run_spec, results):
    rec = run_spec(make_spec("fp16", "enet"))
    shutil.rmtree(results / "cache" / "baselines")
    with pytest.raises(RetimeError, match="not cached"):
        retime_record(rec, results)
    assert not (results / "cache" / "baselines").exists()


def test_the_cli_rewrites_the_record_and_refuses_bad_input(make_spec, run_spec, results,
                                                           capsys):
    rec = run_spec(make_spec("huffman", "enet"))
    assert main(["retime", "--results", str(results), "--run", rec["run_id"][:8]]) == 0
    written = read_record(results, rec["run_id"])
    assert written["retimed"]["previous"]["speedup"] == rec["metrics"]["speedup"]
    assert written["metrics"]["miou"] == rec["metrics"]["miou"]
    assert main(["retime", "--results", str(results), "--timed-before", "no-such-commit"]) == 2
    assert "no-such-commit" in capsys.readouterr().err
    assert main(["retime", "--results", str(results), "--run", "ffff"]) == 2


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_timed_before_orders_revisions(tmp_path):
    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    revs = []
    for i in range(2):
        (tmp_path / "f").write_text(str(i))
        git("add", "f")
        git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", f"c{i}")
        revs.append(git("rev-parse", "HEAD"))
    old, fix = revs

    def rec(rev):
        return json.loads(json.dumps({"env": {"git_revision": rev}}))

    assert timed_before(rec(old + "-dirty"), fix, repo=tmp_path)
    assert not timed_before(rec(fix), fix, repo=tmp_path)
    assert timed_before({"env": {}}, fix, repo=tmp_path)  # no revision: counts as before


def test_an_auto_layout_is_pinned_to_the_one_the_run_chose():
    """`ort_layout=auto` picks a layout by a short timing in each process; a retime must
    time the graph the run timed, not whichever layout wins on the day."""
    from types import SimpleNamespace

    from bench.retime import pin_recorded_layout
    from methods.quant.method import QuantMethodConfig

    stage = SimpleNamespace(method=SimpleNamespace(config=QuantMethodConfig()))
    assert stage.method.config.ort_layout == "auto"
    pin_recorded_layout([stage], {"extras": {"ort_layout": "nchw"}})
    assert stage.method.config.ort_layout == "nchw"
    fixed = SimpleNamespace(method=SimpleNamespace(config=QuantMethodConfig(ort_layout="nhwc")))
    pin_recorded_layout([fixed], {"extras": {"ort_layout": "nchw"}})
    assert fixed.method.config.ort_layout == "nhwc"  # a layout the user set stays


def test_a_revision_git_cannot_order_is_retimed_with_a_warning(make_spec, run_spec, results,
                                                                capsys):
    """A record from another clone names a commit this repository lacks: retimed, not fatal."""
    from bench.records import write_record
    from bench.retime import retime_results

    rec = run_spec(make_spec("fp16", "enet"))
    rec["env"]["git_revision"] = "0" * 40
    write_record(results, rec)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=False).stdout.strip()
    if not head:
        pytest.skip("not in a git checkout")
    assert retime_results(results, before=head, dry_run=True) == {}
    err = capsys.readouterr().err
    assert "warning" in err and "1 run(s)" in err and "min" in err
