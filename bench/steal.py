"""Work-stealing over a grid's runs, so that several processes given one grid and one
results directory share it out instead of queueing behind each other.

Waiting on a run's lock (`bench.locks.locked`) would make a second process follow the
first from run to run, each time blocked on the one the first has just started. Instead a
run whose lock another process holds is deferred and the next free one taken; so is a run
whose baseline (its own or a teacher's) another process is training, rather than blocking
on the baseline's lock while free runs wait. Only when every remaining run is deferred
does the process wait, holding no lock, for the first of them to come free; by then it is
usually done (a final record: counted as done by another process, not run again), and the
remaining runs are tried again. A record another process left failed is run here again,
as a re-run of the grid would.

Lock order (`bench.locks`) holds: the run's lock is taken first; the probes under it only
try locks (never wait), a baseline's lock last and alone, so no two processes can wait on
each other.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from bench.baseline import cache_paths
from bench.locks import try_locked, wait_free
from bench.records import is_done, read_record
from bench.spec import RunSpec

Blocker = tuple[str, str]  # (lock kind, key) another process holds


def _cached(results: Path, key: str) -> bool:
    return all(p.exists() for p in cache_paths(results, key))


def baseline_blocker(spec: RunSpec, results: Path, needs: Sequence[str],
                     producers: Mapping[str, Sequence[str]]) -> Blocker | None:
    """The lock another process holds on a baseline `spec` needs and which is not cached
    yet: the baseline's own lock (being trained), or the run lock of a `none` run of this
    grid that trains it (taken, its training not begun yet); None when it may start."""
    for key in needs:
        if _cached(results, key):
            continue
        with try_locked(results, "baseline", key) as mine:
            if not mine:
                return "baseline", key
        for run_id in producers.get(key, ()):
            if run_id == spec.run_id:  # its own lock, held by this process
                continue
            with try_locked(results, "run", run_id) as mine:
                if not mine:
                    return "run", run_id
    return None


def _describe(spec: RunSpec) -> str:
    kind = "baseline run" if spec.is_baseline else "run"
    return f"{kind} {spec.run_id} ({spec.model} / {spec.label})"


def steal(todo: list[RunSpec], *, results: Path, run: Callable[[RunSpec], dict[str, Any]],
          needs: Mapping[str, Sequence[str]], producers: Mapping[str, Sequence[str]]
          ) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Run every spec of `todo` here or see it finished elsewhere, free ones first.

    `run(spec)` runs one (its record is written by then); `needs[run_id]` are the baseline
    cache keys a run starts from (teachers included), `producers[key]` the run ids of this
    grid's `none` runs that train that key. Returns (record by run id, the run ids another
    process finished while this one went through the grid)."""
    records: dict[str, dict[str, Any]] = {}
    elsewhere: set[str] = set()
    bar = tqdm(total=len(todo), desc="grid", unit="run", disable=None)

    def claim(spec: RunSpec) -> Blocker | None:
        """Run `spec` or take another process's final record of it; else what blocks it."""
        with try_locked(results, "run", spec.run_id) as mine:
            if not mine:
                return "run", spec.run_id
            rec = read_record(results, spec.run_id)
            if is_done(rec, results):
                print(f"{_describe(spec)} was finished by another process; not run again",
                      file=sys.stderr)
                records[spec.run_id] = rec
                elsewhere.add(spec.run_id)
                return None
            blocker = baseline_blocker(spec, results, needs.get(spec.run_id, ()), producers)
            if blocker is None:
                other = f", {len(elsewhere)} by another process" if elsewhere else ""
                bar.set_postfix_str(f"{spec.model} {spec.label} seed={spec.seed}{other}")
                records[spec.run_id] = run(spec)
            return blocker

    told: set[str] = set()
    queue = list(todo)
    try:
        while queue:
            deferred: list[tuple[RunSpec, Blocker]] = []
            for spec in queue:
                blocker = claim(spec)
                if blocker is None:
                    bar.update(1)
                    continue
                deferred.append((spec, blocker))
                if spec.run_id not in told:  # one line per run, however often it is tried
                    told.add(spec.run_id)
                    why = ("another process holds it" if blocker == ("run", spec.run_id)
                           else f"another process is training its baseline ({blocker[0]} "
                                f"lock {blocker[1]})")
                    print(f"{_describe(spec)}: {why}; taking the next free run",
                          file=sys.stderr)
            if len(deferred) == len(queue):  # nothing free: wait, holding no lock
                spec, (kind, key) = deferred[0]
                print(f"nothing else free: waiting for {kind} lock {key} "
                      f"({_describe(spec)})", file=sys.stderr)
                wait_free(results, kind, key)
            queue = [s for s, _ in deferred]
    finally:
        bar.close()
    return records, elsewhere
