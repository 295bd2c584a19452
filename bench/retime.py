"""`python -m bench retime`: time finished runs again from their artifacts, each paired with
its cached baseline in one process exactly as the runner times it, and rewrite only the
timing fields of their records.

Why: accuracy and bytes are properties of an artifact; a timing is a property of the host
at one moment, and it can be wrong where the artifact is not. When it was (the FTZ/DAZ
fault of bench/numerics.py ran onnxruntime's float baselines, and on some hosts PyTorch's,
on the denormal slow path), re-running a grid repeats hours of training to change one
column; re-timing takes a minute a row and leaves the rest as it was. A re-timed record
says so: `retimed` holds when, at which revision and in which environment the timing was
taken again, and the timing fields it replaced (`previous`), so the change is auditable.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from bench.baseline import cache_paths
from bench.export import select_predictor
from bench.facts import DeployLatency
from bench.latency import measure_paired
from bench.locks import locked
from bench.records import artifact_problem, read_record, write_record
from bench.runner import baseline_predictor, environment, git_revision
from bench.spec import spec_from_dict
from bench.verify import reload_run, select_records


class RetimeError(RuntimeError):
    """A record that cannot be re-timed as it was timed (no artifact, no cached baseline,
    another runtime than recorded)."""


def known_revision(revision: str, repo: Path | None = None) -> bool:
    """Whether `revision` names a commit of the repository (for --timed-before)."""
    return subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
                          cwd=repo, capture_output=True, check=False).returncode == 0


def timed_before(rec: dict[str, Any], revision: str, repo: Path | None = None) -> bool:
    """Whether the run was recorded at a git revision that does not contain `revision`
    (e.g. the commit of a timing fix). A record without a revision counts as before."""
    rev = ((rec.get("env") or {}).get("git_revision") or "").removesuffix("-dirty")
    if not rev:
        return True
    out = subprocess.run(["git", "merge-base", "--is-ancestor", revision, rev],
                         cwd=repo, capture_output=True, text=True, check=False)
    if out.returncode not in (0, 1):  # 128: an unknown commit
        raise RetimeError(f"git cannot order {revision!r} and {rev!r}: "
                          f"{out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ''}")
    return out.returncode == 1


def pin_recorded_layout(stages, rec: dict[str, Any]) -> None:
    """Time the graph the run timed: where a stage's onnxruntime layout is `auto` (chosen
    by a short timing in each process, so a busy moment can flip it), use the layout the
    run chose and recorded (`extras.ort_layout`)."""
    chosen = (rec.get("extras") or {}).get("ort_layout")
    for st in stages:
        cfg = getattr(st.method, "config", None)
        if chosen and getattr(cfg, "ort_layout", None) == "auto":
            st.method.config = dataclasses.replace(cfg, ort_layout=chosen)


def retime_record(rec: dict[str, Any], results: Path, device_name: str = "cpu",
                  data_root: Path | None = None) -> dict[str, Any]:
    """The record with its timing taken again: `metrics`' timing fields and, for a run
    that named runtimes, `extras.deploy`, plus `retimed`. The artifact must be the one
    recorded, and the baseline cached (retiming never trains)."""
    changed = artifact_problem(results, rec)
    if changed:
        raise RetimeError(changed)
    spec = spec_from_dict(rec["config"])
    ckpt, _ = cache_paths(results, spec.weights_spec().run_id)
    if not ckpt.exists():
        raise RetimeError(f"its baseline is not cached ({ckpt}); retime never trains: run "
                          "`bench run` with the same settings first")
    threads = (rec.get("env") or {}).get("threads")
    before = torch.get_num_threads()
    if isinstance(threads, int) and threads >= 1:
        torch.set_num_threads(threads)  # timed at the thread count the run recorded
    try:
        ctx, loaded, _, stages, path = reload_run(rec, results, device_name, data_root)
        device = ctx.device
        loaded.eval()
        pin_recorded_layout(stages, rec)
        predict, runtime = select_predictor(loaded, path, stages, ctx)
        if runtime != rec["metrics"].get("runtime", "torch"):
            raise RetimeError(f"it would run in {runtime}, but was timed in "
                              f"{rec['metrics'].get('runtime')}")
        lat = measure_paired(predict, baseline_predictor(stages, runtime, ctx),
                             ctx.input_shape, device, runs=ctx.budget.latency_runs,
                             warmup=ctx.budget.latency_warmup)
        if spec.runtimes:
            from bench.runtimes.deploy import time_runtimes

            time_runtimes(ctx, loaded, runtime)
        env = environment(device)
    finally:
        torch.set_num_threads(before)
    old_m = rec["metrics"]
    extras = dict(rec.get("extras") or {})
    # the fields measure_paired writes (bench/latency.py) replace theirs; the old kept
    previous: dict[str, Any] = {k: old_m[k] for k in lat if k in old_m}
    if DeployLatency.key in ctx.extras:
        if DeployLatency.key in extras:
            previous[DeployLatency.key] = extras[DeployLatency.key]
        extras[DeployLatency.key] = ctx.extras[DeployLatency.key]
    history = list((rec.get("retimed") or {}).get("history", []))
    if rec.get("retimed"):
        history.append({k: v for k, v in rec["retimed"].items() if k != "history"})
    return {
        **rec,
        "metrics": {**old_m, **lat},
        "extras": extras,
        "retimed": {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "git_revision": git_revision(), "env": env,
                    "previous": previous, "history": history},
    }


def _timed_before_or_unknown(rec: dict[str, Any], revision: str) -> bool:
    """`timed_before`, counting a revision this repository does not know (a record from
    another clone) as before, with a warning: timing it again is harmless."""
    try:
        return timed_before(rec, revision)
    except RetimeError as e:
        print(f"warning: {rec['run_id']}: {e}; re-timing it", file=sys.stderr)
        return True


def retime_results(results: Path, runs: list[str] | None = None, device_name: str = "cpu",
                   data_root: Path | None = None, before: str | None = None,
                   dry_run: bool = False) -> dict[str, str]:
    """Re-time the chosen ok runs of `results` (all, those whose id starts with one of
    `runs`, and of those only the ones timed before revision `before`); each record is
    rewritten atomically under its run lock. Returns {run_id: why it failed}."""
    recs = select_records(results, runs)
    if before:
        recs = [r for r in recs if _timed_before_or_unknown(r, before)]
    cost = sum(float((r.get("timings") or {}).get(k, 0.0)) for r in recs
               for k in ("latency_s", "deploy_s"))
    print(f"retime: {len(recs)} run(s) in {results}"
          + (f" timed before {before}" if before else "")
          + f"; about {cost / 60:.0f} min, judged from their records' own timing cost",
          file=sys.stderr)
    if dry_run:
        for r in recs:
            print(f"{r['run_id']}  {r['model']}  {r.get('label')}  "
                  f"{(r.get('env') or {}).get('git_revision', '?')[:12]}")
        return {}
    failed: dict[str, str] = {}
    for rec in tqdm(recs, desc="retime", unit="run", disable=None):
        try:
            with locked(results, "run", rec["run_id"]):
                now = read_record(results, rec["run_id"]) or rec  # another process may have
                new = retime_record(now, results, device_name, data_root)  # written it
                write_record(results, new)
            old, m, nan = rec["metrics"], new["metrics"], float("nan")
            print(f"{rec['run_id']} {rec['model']} {rec.get('label')}: speedup "
                  f"{old.get('speedup', nan):.2f} -> {m['speedup']:.2f} "
                  f"(IQR {m['speedup_iqr']:.2f}), baseline "
                  f"{old.get('baseline_latency_ms', nan):.1f} -> "
                  f"{m['baseline_latency_ms']:.1f} ms", file=sys.stderr)
        except Exception as e:  # report and go on: one row never stops the others
            failed[rec["run_id"]] = f"{type(e).__name__}: {e}"
            print(f"FAIL {rec['run_id']} {rec['model']} {rec.get('label')}: "
                  f"{failed[rec['run_id']]}", file=sys.stderr)
    print(f"retimed {len(recs) - len(failed)}/{len(recs)} runs", file=sys.stderr)
    return failed
