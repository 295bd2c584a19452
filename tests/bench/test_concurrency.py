"""Two grids on one results directory: every baseline trained once, every run run once,
every row paired with the checkpoint it started from; orphan temporaries cleaned under
their key's lock; the leaderboard never pairs a run with a baseline it did not start from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from bench import locks
from bench.baseline import cache_paths
from bench.leaderboard import build_rows
from bench.records import iter_records, write_record

# a `python -m bench` that also appends what it trains and runs to $RACE_LOG (O_APPEND:
# whole lines from both processes), so the test can count them
RACER = """
import os, sys
import bench.context, bench.runner

def note(line):
    fd = os.open(os.environ["RACE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (line + "\\n").encode())
    os.close(fd)

get_or_train, run_one = bench.context.get_or_train, bench.runner.run_one

def counted_get_or_train(model, results, key, *a, **k):
    info, trained = get_or_train(model, results, key, *a, **k)
    if trained:
        note(f"trained {key} {info['sha256']}")
    return info, trained

def counted_run_one(spec, **k):
    note(f"ran {spec.run_id}")
    return run_one(spec, **k)

bench.context.get_or_train, bench.runner.run_one = counted_get_or_train, counted_run_one
from bench.cli import main
sys.exit(main(sys.argv[1:]))
"""

TINY = ["--budget", "smoke", "--set", "budget.train_images=8", "--set",
        "budget.eval_images=4", "--set", "budget.latency_runs=3", "--set",
        "budget.latency_warmup=1", "--set", "budget.calibration_images=8"]


def test_two_racing_grids_train_each_baseline_once_and_pair_rows(tmp_path):
    results, log = tmp_path / "results", tmp_path / "race.log"
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    root = Path(__file__).resolve().parents[2]  # this checkout's code, in both processes
    env = dict(os.environ, RACE_LOG=str(log), PYTHONPATH=str(root))
    cmd = [sys.executable, str(script), "run", "--method", "none,fp16", "--model",
           "enet", *TINY, "--device", "cpu", "--results", str(results)]
    procs = [subprocess.Popen([*cmd, "--threads", t], env=env, cwd=root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for t in ("1", "2")]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    lines = log.read_text().splitlines()
    trained = [ln for ln in lines if ln.startswith("trained")]
    ran = Counter(ln.split()[1] for ln in lines if ln.startswith("ran"))
    recs = list(iter_records(results))
    assert len(recs) == 2 and all(r["status"] == "ok" for r in recs)
    assert len(trained) == 1, trained  # one baseline, trained once
    assert ran == Counter({r["run_id"]: 1 for r in recs}), ran  # no run run twice
    (key,) = {r["baseline_run_id"] for r in recs}
    sidecar = json.loads(cache_paths(results, key)[1].read_text())
    assert trained[0].split()[2] == sidecar["sha256"]
    assert {r["baseline"]["sha256"] for r in recs} == {sidecar["sha256"]}
    rows, failed = build_rows(results)
    assert not failed and all(r["delta_miou"] is not None for r in rows)
    assert not list(results.rglob("*.tmp"))


def _rec(run_id, method, sha, miou, threads=1):
    from tests.bench.test_records_schema import GOOD

    r = json.loads(json.dumps(GOOD))
    r.update(run_id=run_id, method=method, label=method, baseline_run_id="base",
             baseline={"run_id": "base", "sha256": sha}, env={"device": "cpu",
                                                             "threads": threads})
    r["config"]["method"] = method
    r["metrics"]["miou"] = miou
    return r


def test_leaderboard_pairs_a_row_only_with_the_checkpoint_it_started_from(tmp_path, capsys):
    write_record(tmp_path, _rec("base", "none", "a" * 64, 0.8))
    write_record(tmp_path, _rec("same", "fp16", "a" * 64, 0.7, threads=2))
    write_record(tmp_path, _rec("other", "kmeans", "b" * 64, 0.6))
    rows, _ = build_rows(tmp_path)
    by = {r["method"]: r for r in rows}
    assert by["fp16"]["delta_miou"] == pytest.approx(-0.1)
    assert by["fp16"]["speedup"] is None  # timed at another thread count: not compared
    assert by["kmeans"]["delta_miou"] is None
    assert by["none"]["speedup"] == 1.0
    err = capsys.readouterr().err
    assert "run other started from baseline checkpoint bbbbbbbbbbbb" in err


def test_orphan_temporaries_are_removed_under_their_lock(tmp_path):
    res = tmp_path
    old = time.time() - 3600
    orphans = [res / "runs" / ".r1.json.abc123.tmp",
               res / "artifacts" / "r2" / ".model.sbz.x_y9.tmp",
               res / "cache" / "baselines" / ".k1.safetensors.q1w2.tmp",
               res / "cache" / "baselines" / "k2.tmp"]  # the old fixed checkpoint name
    held = res / "runs" / ".r3.json.zzz.tmp"  # its run's lock is held: a live writer
    fresh = res / "runs" / ".r4.json.new.tmp"  # written after this process started
    other = res / ".leaderboard.md.abc.tmp"  # no lock guards it: left alone
    for p in [*orphans, held, fresh, other]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
        if p is not fresh:
            os.utime(p, (old, old))
    os.utime(fresh, (time.time() + 60, time.time() + 60))
    locks.lock_path(res, "run", "r3").parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; "
         "l = FileLock(sys.argv[1]); l.acquire(); print('held', flush=True); time.sleep(60)",
         str(locks.lock_path(res, "run", "r3"))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        removed = locks.clean_orphan_temps(res)
    finally:
        holder.kill()
        holder.wait()
    assert sorted(removed) == sorted(orphans)
    assert held.exists() and fresh.exists() and other.exists()
