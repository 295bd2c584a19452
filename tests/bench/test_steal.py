"""Work-stealing (bench/steal.py): a grid that finds a run's lock, or its baseline's, held by
another process runs the free runs first and never the held one, waits only when nothing
is free, and counts what the other process finished as done there; two `bench run`
processes on one grid split it, each run done once. Runs are faked (a not-applicable
record written at once, or after a pause), so nothing trains."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

import bench.runner
from bench import locks
from bench.baseline import cache_paths
from bench.records import NOT_APPLICABLE, read_record, write_record
from bench.runner import base_record, run_grid


def fake_record(spec) -> dict:
    """A final record without training: not applicable needs no artifact."""
    return {**base_record(spec, torch.device("cpu")), "status": NOT_APPLICABLE,
            "error": "faked by the test"}


@pytest.fixture
def ran(monkeypatch):
    """The labels (and models) the grid ran itself, in order, with whether the enet
    baseline was cached at that moment."""
    calls: list[tuple[str, str, bool]] = []

    def fake_run_one(spec, *, results, device, data_root=None):
        cached = all(p.exists() for p in cache_paths(results, spec.weights_spec().run_id))
        calls.append((spec.model, spec.label, cached))
        rec = fake_record(spec)
        write_record(results, rec)
        return rec

    monkeypatch.setattr(bench.runner, "run_one", fake_run_one)
    return calls


class Holder(threading.Thread):
    """Another process, in effect: holds one lock (a second `flock` on the file conflicts
    even within one process) until the grid has run `until` labels or 20 s pass, then
    does `finish()` and lets go. `saw` says whether it saw them run while it held it."""

    def __init__(self, results, kind, key, ran, until, finish):
        super().__init__(daemon=True)
        self.lock = locks._lock(results, kind, key)
        self.ran, self.until, self.finish = ran, set(until), finish
        self.held, self.saw = threading.Event(), False

    def run(self):
        self.lock.acquire()
        self.held.set()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if self.until <= {(m, label) for m, label, _ in self.ran}:
                    self.saw = True
                    break
                time.sleep(0.02)
            self.finish()
        finally:
            self.lock.release()


def test_a_held_run_is_left_to_its_holder_while_the_free_runs_go_first(make_spec, results,
                                                                       ran, capsys):
    fp16, kmeans, huffman = (make_spec(m) for m in ("fp16", "kmeans", "huffman"))
    holder = Holder(results, "run", kmeans.run_id, ran,
                    until=[("enet", "none"), ("enet", "fp16"), ("enet", "huffman")],
                    finish=lambda: write_record(results, fake_record(kmeans)))
    holder.start()
    holder.held.wait()
    records = run_grid([fp16, kmeans, huffman], results=results, device=torch.device("cpu"))
    holder.join()
    # today's runner waited on kmeans's lock before huffman: the holder timed out
    assert holder.saw, ran
    assert [label for _, label, _ in ran] == ["none", "fp16", "huffman"]  # never kmeans
    assert [r["label"] for r in records] == ["none", "fp16", "kmeans", "huffman"]
    assert records.elsewhere == {kmeans.run_id} and not records.resumed
    assert read_record(results, kmeans.run_id)["error"] == "faked by the test"
    err = capsys.readouterr().err
    assert (f"run {kmeans.run_id} (enet / kmeans): another process holds it; taking the "
            f"next free run") in err
    assert f"run {kmeans.run_id} (enet / kmeans) was finished by another process" in err


def test_a_run_waits_for_the_baseline_another_process_is_training(make_spec, results, ran):
    """The enet baseline's lock is held, its checkpoint not cached: the grid trains the
    U-Net baseline and runs the U-Net run meanwhile, and starts the enet runs (its baseline
    run included) only once the checkpoint exists."""
    specs = [make_spec("fp16", "enet"), make_spec("fp16", "unet_small")]
    key = specs[0].weights_spec().run_id

    def cache():
        for p in cache_paths(results, key):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("{}")

    holder = Holder(results, "baseline", key, ran,
                    until=[("unet_small", "none"), ("unet_small", "fp16")], finish=cache)
    holder.start()
    holder.held.wait()
    records = run_grid(specs, results=results, device=torch.device("cpu"))
    holder.join()
    assert holder.saw, ran
    assert [m for m, _, _ in ran[:2]] == ["unet_small", "unet_small"]
    enet = [(label, cached) for m, label, cached in ran if m == "enet"]
    assert enet == [("none", True), ("fp16", True)]  # each once, after the checkpoint
    assert len(records) == 4 and not records.elsewhere


# a `python -m bench` whose runs are faked: each notes "<pid> ran <run id>" in $STEAL_LOG
# (O_APPEND: whole lines from both processes), the first waits until both processes have
# started (so neither finishes the grid alone), and each takes $STEAL_PAUSE seconds
RACER = """
import os, sys, time
import torch
import bench.runner
from bench.records import NOT_APPLICABLE, write_record

LOG = os.environ["STEAL_LOG"]

def note(line):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (f"{os.getpid()} {line}\\n").encode())
    os.close(fd)

def fake_run_one(spec, *, results, device, data_root=None):
    note(f"ran {spec.run_id}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(LOG) as f:
            if len({ln.split()[0] for ln in f if ln.split()[1] == "started"}) >= 2:
                break
        time.sleep(0.05)
    time.sleep(float(os.environ["STEAL_PAUSE"]))
    rec = {**bench.runner.base_record(spec, torch.device("cpu")), "status": NOT_APPLICABLE,
           "error": f"faked by {os.getpid()}"}
    write_record(results, rec)
    return rec

bench.runner.run_one = fake_run_one
note("started")
from bench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_two_grid_processes_split_the_runs_and_run_each_once(tmp_path):
    results, log = tmp_path / "results", tmp_path / "steal.log"
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    root = Path(__file__).resolve().parents[2]  # this checkout's code, in both processes
    env = dict(os.environ, STEAL_LOG=str(log), STEAL_PAUSE="1", PYTHONPATH=str(root))
    cmd = [sys.executable, str(script), "run", "--method", "fp16,kmeans,huffman,lowrank",
           "--model", "enet", "--budget", "smoke", "--device", "cpu", "--threads", "1",
           "--results", str(results)]
    procs = [subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    lines = [ln.split() for ln in log.read_text().splitlines()]
    ran = Counter(run_id for _, what, *rest in lines if what == "ran" for run_id in rest)
    by_pid = Counter(pid for pid, what, *_ in lines if what == "ran")
    assert len(ran) == 5 and set(ran.values()) == {1}, ran  # baseline + 4 runs, each once
    assert len(by_pid) == 2, by_pid  # both processes ran some: the grid was split
    for p, (_, err) in zip(procs, outs):  # each summary counts what the other did
        here = by_pid[str(p.pid)]
        summary = err.strip().splitlines()[-1]
        assert summary.startswith("0 runs ok, 5 not applicable, 0 failed ("), summary
        assert (f"{5 - here} done by another process meanwhile; {here} run here)"
                in summary), summary
