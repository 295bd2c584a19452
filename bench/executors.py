"""Where the runs of a grid execute: in this process (`local`), or as Ray tasks (`ray`).

A run is a pure function of its spec, so it writes the same record wherever it runs. The
only ordering that matters is that a baseline is trained before the runs that start from
it (its own model's, or a teacher's), so that many workers starting at once do not all
train it: executors run the grid in two waves, the `none` runs of every baseline the grid
needs, then the rest. A worker that dies loses only its own run, which is recorded as
failed with the reason; re-running the grid retries it and skips everything finished.

Several `local` processes on one grid and results directory share it out by work-stealing
(`bench.steal`): each skips the runs another holds, and the runs whose baseline another is
training (the local executor goes through both waves as one queue, baselines first, so a
run of a baseline already trained need not wait for one still training). The Ray executor
does not: its workers take their run's lock waiting (`run_claimed`), which is right within
one Ray grid (the driver hands each run to one worker) but makes a Ray worker wait on a run
another grid holds rather than take a free one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from bench.locks import clean_orphan_temps, locked
from bench.records import FAILED, GridRecords, is_done, read_record, write_record
from bench.runner import base_record, pending, resolve_device, run_claimed, run_grid, waves
from bench.spec import RunSpec, spec_from_dict

EXECUTORS = ("local", "ray")


def run_local(specs: list[RunSpec], *, results: Path, device: str, data_root: Path | None,
              threads: int | None) -> GridRecords:
    return run_grid(specs, results=results, device=resolve_device(device), data_root=data_root,
                    threads=threads)


def _ray_task(spec_dict: dict, results: str, device: str, data_root: str | None,
              threads: int | None) -> dict:
    import torch

    from bench.numerics import flush_denormals

    flush_denormals()  # a worker process: before its first parallel region
    torch.set_num_threads(threads or 1)
    return run_claimed(spec_from_dict(spec_dict), results=Path(results),
                       device=resolve_device(device),
                       data_root=Path(data_root) if data_root else None)


def gather(results: Path, spec: RunSpec, rec: dict[str, Any]) -> dict[str, Any]:
    """Write a worker's record into the driver's results (workers may have no shared disk),
    under the run's lock like every other writer; a worker lost while another process
    finished the same run leaves that process's record standing."""
    with locked(results, "run", spec.run_id):
        current = read_record(results, spec.run_id)
        if rec.get("status") == FAILED and is_done(current, results):
            return current
        write_record(results, rec)
    return rec


def run_ray(specs: list[RunSpec], *, results: Path, device: str, data_root: Path | None,
            threads: int | None, ray_init: Callable[[], Any] | None = None
            ) -> GridRecords:
    try:
        import ray
    except ImportError:
        raise RuntimeError("the ray executor needs Ray: pip install -e '.[ray]'") from None
    if not ray.is_initialized():
        if ray_init is not None:
            ray_init()
        elif os.environ.get("RAY_ADDRESS"):
            ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    gpus = 1 if device == "cuda" else 0
    task = ray.remote(num_cpus=threads or 1, num_gpus=gpus, max_retries=0)(_ray_task)
    results = Path(results).resolve()
    root = str(data_root.resolve()) if data_root else None
    clean_orphan_temps(results)
    records = GridRecords()  # `elsewhere` stays empty: a worker cannot tell
    for wave in waves(specs):
        todo, done = pending(wave, results)
        records += done
        records.resumed |= {r["run_id"] for r in done}
        refs = {task.remote(s.to_dict(), str(results), device, root, threads): s for s in todo}
        bar = tqdm(total=len(refs), desc="grid (ray)", unit="run", disable=None)
        remaining = list(refs)
        while remaining:
            ready, remaining = ray.wait(remaining, num_returns=1)
            spec = refs[ready[0]]
            try:
                rec = ray.get(ready[0])
            except Exception as e:  # the worker died: only its own run is lost
                rec = base_record(spec, resolve_device("cpu"))
                rec.update({"status": FAILED,
                            "error": f"worker lost: {type(e).__name__}: {e}".splitlines()[0]})
                print(f"run {spec.run_id} failed: {rec['error']}", file=sys.stderr)
            records.append(gather(results, spec, rec))
            bar.update(1)
        bar.close()
    return records


def run_specs(specs: list[RunSpec], *, executor: str = "local", results: Path,
              device: str = "auto", data_root: Path | None = None,
              threads: int | None = None) -> GridRecords:
    if executor == "local":
        return run_local(specs, results=results, device=device, data_root=data_root,
                         threads=threads)
    if executor == "ray":
        return run_ray(specs, results=results, device=device, data_root=data_root,
                       threads=threads)
    raise ValueError(f"unknown executor {executor!r}; valid choices: {', '.join(EXECUTORS)}")
