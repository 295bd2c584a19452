"""Conformance: `python -m bench verify` reloads every ok run's artifact from its bytes,
checks each stage's declared property on the loaded tensors, re-evaluates on the
validation split and demands the recorded mIoU exactly (at the run's own thread count:
a float sum over another number of threads rounds in another order). A leaderboard row that does not
pass this is not to be trusted, whichever plugin produced it."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench.artifact import ArtifactError
from bench.context import RunContext
from bench.export import load_model, select_predictor, stage_problems
from bench.records import OK, artifact_path, artifact_problem, iter_records
from bench.registry import UnknownNameError
from bench.runner import resolve_device
from bench.spec import spec_from_dict


def record_data_root(rec: dict, data_root: Path | None = None) -> Path | None:
    """The data a run read: `data_root` when given, else the resolved root its record
    names (None for embedded datasets)."""
    if data_root is not None:
        return Path(data_root)
    where = rec.get("data_root")
    return Path(where["resolved"]) if where else None


def reload_run(rec: dict, results: Path, device_name: str = "cpu",
               data_root: Path | None = None):
    """A finished run as its artifact reloads, for re-checking (verify) or re-timing
    (bench/retime.py): (its context, the model on the device, header, stages, artifact
    path). Raises ArtifactError when the file does not load."""
    path = artifact_path(results, rec)
    model, header, stages = load_model(path)
    device = resolve_device(device_name)
    ctx = RunContext(spec_from_dict(rec["config"]), device=device, results=results,
                     data_root=record_data_root(rec, data_root))
    return ctx, model.to(device), header, stages, path


def verify_record(rec: dict, results: Path, device_name: str = "cpu",
                  data_root: Path | None = None) -> list[str]:
    try:
        ctx, model, header, stages, path = reload_run(rec, results, device_name, data_root)
    except ArtifactError as e:
        return [f"artifact does not load: {e}"]
    problems = []
    changed = artifact_problem(results, rec)  # another size, or other bytes than recorded
    if changed:
        problems.append(changed)
    problems += stage_problems(model, header, stages)
    predict, _ = select_predictor(model, path, stages, ctx)
    miou = evaluate_as_recorded(ctx, predict, rec)
    if miou != rec["metrics"]["miou"]:
        problems.append(f"mIoU {miou!r} != recorded {rec['metrics']['miou']!r}")
    return problems


def evaluate_as_recorded(ctx: RunContext, predict, rec: dict) -> float:
    """The mIoU of `predict`, evaluated at the thread count the run recorded."""
    threads = (rec.get("env") or {}).get("threads")
    before = torch.get_num_threads()
    if isinstance(threads, int) and threads >= 1:
        torch.set_num_threads(threads)
    try:
        return ctx.evaluate(predict, desc=f"verify {rec['run_id']}")["miou"]
    finally:
        torch.set_num_threads(before)


def select_records(results: Path, runs: list[str] | None = None,
                   malformed: list[Path] | None = None) -> list[dict]:
    """The ok records to verify: all of them, or those whose run id starts with one of
    `runs` (a prefix that matches no ok run is an error, not an empty success). Records
    failing the schema are named on stderr and appended to `malformed`."""
    recs = [r for r in iter_records(results, malformed=malformed) if r.get("status") == OK]
    if not runs:
        return recs
    chosen = [r for r in recs if r["run_id"].startswith(tuple(runs))]
    unmatched = [p for p in runs if not any(r["run_id"].startswith(p) for r in chosen)]
    if unmatched:
        raise UnknownNameError(f"no ok run in {results} has a run id starting with "
                         f"{', '.join(unmatched)}; ok runs: "
                         f"{', '.join(sorted(r['run_id'] for r in recs)) or '(none)'}")
    return chosen


def verify_results(results: Path, device_name: str = "cpu", runs: list[str] | None = None,
                   data_root: Path | None = None) -> dict[str, list[str]]:
    bad: dict[str, list[str]] = {}
    malformed: list[Path] = []
    recs = select_records(results, runs, malformed)
    for p in malformed:  # already named on stderr; a check that failed all the same
        if not runs or p.stem.startswith(tuple(runs)):
            bad[p.stem] = [f"malformed record {p}"]
    for rec in tqdm(recs, desc="verify", unit="run", disable=None):
        try:
            problems = verify_record(rec, results, device_name, data_root)
        except Exception as e:  # report and go on to the next artifact
            problems = [f"{type(e).__name__}: {e}"]
        if problems:
            bad[rec["run_id"]] = problems
            for p in problems:
                print(f"FAIL {rec['run_id']} {rec['model']} {rec.get('label')}: {p}",
                      file=sys.stderr)
    n_bad = sum(r["run_id"] in bad for r in recs)
    print(f"verified {len(recs) - n_bad}/{len(recs)} runs"
          + (f"; {len(bad) - n_bad} malformed record(s)" if len(bad) > n_bad else ""),
          file=sys.stderr)
    return bad
