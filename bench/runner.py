"""Runs a grid of run specs: baselines first, resume from finished records, a failure
recorded with its reason while the grid goes on, every record written atomically, each
run under its file lock so two grids on one results directory never run it twice, and
share it out: a run another process holds is left to it (`bench.steal`)."""

from __future__ import annotations

import copy
import functools
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench import __version__
from bench.artifact import state_bytes_dense
from bench.complexity import count_madds
from bench.context import RunContext
from bench.digest import file_sha256
from bench.export import export_model, load_model, select_predictor, stage_problems
from bench.latency import measure_paired
from bench.locks import clean_orphan_temps, locked
from bench.method import NotApplicable, stages_from_record
from bench.numerics import flush_denormals
from bench.records import (
    FAILED,
    NOT_APPLICABLE,
    OK,
    GridRecords,
    is_done,
    read_record,
    write_record,
)
from bench.runtimes.base import complexity_model
from bench.spec import RunSpec
from bench.steal import steal


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but torch.cuda.is_available() is False")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; valid choices: auto, cpu, cuda")
    return torch.device(name)


@functools.cache
def git_revision() -> str | None:
    """The checkout this process runs, read once: the code was imported at start, so a
    commit landing during a long grid must not relabel its later records."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5,
                               cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> dict[str, Any]:
    env = {
        "segbench": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "flush_denormal": flush_denormals(),
        "git_revision": git_revision(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def base_record(spec: RunSpec, device: torch.device) -> dict[str, Any]:
    return {
        "run_id": spec.run_id,
        "model": spec.model,
        "method": spec.method,
        "label": spec.label,
        "dataset": spec.dataset,
        "budget": spec.budget.name,
        "seed": spec.seed,
        "config": spec.to_dict(),
        "baseline_run_id": spec.baseline_spec().run_id,
        "env": environment(device),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def execute(spec: RunSpec, ctx: RunContext) -> dict[str, Any]:
    """One run, end to end; returns its `ok` record (raises on failure)."""
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    model, binfo = ctx.baseline()
    timings["baseline_s"] = time.perf_counter() - t
    timings["baseline_train_s"] = float(binfo["train"]["seconds"])
    base_dense = state_bytes_dense(model.state_dict())

    stages = stages_from_record(spec.stages)
    active = []
    timings["compress_s"] = timings["finetune_s"] = 0.0
    for st in stages:
        t = time.perf_counter()
        model = st.method.compress(ctx, model).to(ctx.device)
        timings["compress_s"] += time.perf_counter() - t
        active.append(st)
        epochs = st.method.finetune_epochs(ctx)
        if epochs:
            t = time.perf_counter()
            ctx.train(model, epochs, st.method.finetune_lr(ctx), active,
                      desc=f"finetune {st.name}",
                      log_csv=ctx.results / "logs" / f"{spec.run_id}-{st.name}.csv")
            timings["finetune_s"] += time.perf_counter() - t
    for st in stages:
        model = st.method.finalize(ctx, model)
    model.eval()

    t = time.perf_counter()
    path = export_model(model.cpu(), ctx.results / "artifacts" / spec.run_id / "model",
                        model_name=spec.model, num_classes=ctx.num_classes,
                        model_kwargs=spec.model_kwargs, stages=stages, ctx=ctx,
                        run_id=spec.run_id)
    loaded, header, loaded_stages = load_model(path)
    problems = stage_problems(loaded, header, loaded_stages)
    if problems:  # the artifact does not hold what the stages declare: no row for it
        raise RuntimeError("the reloaded artifact fails its stages' checks: "
                           + "; ".join(problems))
    timings["export_s"] = time.perf_counter() - t
    loaded.to(ctx.device)

    predict, runtime = select_predictor(loaded, path, loaded_stages, ctx)
    scores = ctx.evaluate(predict, desc=f"eval {spec.label}")
    timings["eval_s"] = scores.pop("eval_seconds")
    cx = count_madds(complexity_model(loaded), ctx.input_shape)
    t = time.perf_counter()
    lat = measure_paired(predict, baseline_predictor(loaded_stages, runtime, ctx),
                         ctx.input_shape, ctx.device, runs=ctx.budget.latency_runs,
                         warmup=ctx.budget.latency_warmup)
    timings["latency_s"] = time.perf_counter() - t
    if spec.runtimes:  # the row in every runtime the grid names (bench/runtimes/deploy.py)
        from bench.runtimes.deploy import time_runtimes

        t = time.perf_counter()
        time_runtimes(ctx, loaded, runtime)
        timings["deploy_s"] = time.perf_counter() - t
    size = path.stat().st_size
    dense = state_bytes_dense(loaded.state_dict())
    timings["total_s"] = time.perf_counter() - t_all
    own = max(timings["total_s"] - ctx.baseline_wall_s, 0.0)
    baselines = sum(ctx.baseline_costs.values())
    cost = {
        "run_s": own,  # this run's own compute, baselines excluded
        "baselines_s": baselines,  # training of every baseline it used (own and teachers)
        "baselines": dict(ctx.baseline_costs),
        "total_s": own + baselines,  # what it costs to obtain this model from scratch
        "device_hours": (own + baselines) / 3600.0,
        "device": str(ctx.device),
    }
    metrics = {
        **scores,
        "params": cx.params,
        "nonzero_params": cx.nonzero_params,
        "sparsity": 1.0 - cx.nonzero_params / max(cx.params, 1),
        "madds": cx.madds,
        "effective_madds": cx.effective_madds,
        "size_bytes": size,
        "dense_size_bytes": dense,
        "baseline_dense_size_bytes": base_dense,
        "compression_ratio": base_dense / size,
        **lat,
        "runtime": runtime,
        "input_shape": list(ctx.input_shape),
    }
    return {
        "status": OK,
        "metrics": metrics,
        "timings": timings,
        "cost": cost,
        "artifact": str(path.relative_to(ctx.results)) if path.is_relative_to(ctx.results)
        else str(path),
        "artifact_sha256": file_sha256(path),  # resume and verify detect a changed file
        "baseline": {k: binfo.get(k) for k in ("run_id", "trained_now", "sha256")},
        "class_weights": ctx.class_weight_info(),
        "extras": ctx.extras,
    }


def baseline_predictor(stages, runtime: str, ctx: RunContext):
    """The run's trained baseline in the row's runtime, for paired timing: a stage whose
    runtime the row uses supplies it (`baseline_predictor(ctx, model)`, e.g. the float
    model in onnxruntime); otherwise the eager PyTorch baseline."""
    base, _ = ctx.baseline()
    base.eval()
    for st in reversed(stages):
        if st.method.runtime == runtime:
            other = st.method.baseline_predictor(ctx, base)
            if other is not None:
                return other
    return base


def order_with_baselines(specs: Iterable[RunSpec]) -> list[RunSpec]:
    """Each needed baseline once, before the runs that compare against it."""
    out, seen = [], set()
    for s in specs:
        for x in (s.baseline_spec(), s):
            if x.run_id not in seen:
                seen.add(x.run_id)
                out.append(x)
    return out


def run_one(spec: RunSpec, *, results: Path, device: torch.device,
            data_root: Path | None = None) -> dict[str, Any]:
    record = base_record(spec, device)
    if data_root is not None:  # where the data was, so `verify` can re-read the same files
        record["data_root"] = {"given": str(data_root), "resolved": str(Path(data_root).resolve())}
    ctx = RunContext(spec, device=device, results=results, data_root=data_root)
    try:
        record.update(execute(spec, ctx))
    except (KeyboardInterrupt, SystemExit):
        raise
    except NotApplicable as e:  # asks for what the model lacks: recorded, not retried
        record.update({"status": NOT_APPLICABLE, "error": str(e), "extras": ctx.extras})
        print(f"run {spec.run_id} ({spec.model} / {spec.label}) not applicable: {e}",
              file=sys.stderr)
    except Exception as e:  # a failed run is recorded and the grid goes on
        record.update({
            "status": FAILED,
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(),
            "extras": ctx.extras,
        })
        print(f"run {spec.run_id} ({spec.model} / {spec.label}) failed: "
              f"{type(e).__name__}: {e}", file=sys.stderr)
    record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_record(results, record)
    return record


def run_claimed(spec: RunSpec, *, results: Path, device: torch.device,
                data_root: Path | None = None) -> dict[str, Any]:
    """`run_one` under the run's lock, unless another process finished the run while this
    one waited for the lock (its record is returned, nothing runs twice)."""
    with locked(results, "run", spec.run_id):
        rec = read_record(results, spec.run_id)
        if is_done(rec, results):
            print(f"run {spec.run_id} ({spec.model} / {spec.label}) was finished by another "
                  f"process; not run again", file=sys.stderr)
            return rec
        return run_one(spec, results=results, device=device, data_root=data_root)


def required_baselines(specs: list[RunSpec]) -> list[RunSpec]:
    """The `none` specs of every baseline the grid uses, teachers included."""
    out: dict[str, RunSpec] = {}
    for s in specs:
        base = s.baseline_spec()
        out.setdefault(base.run_id, base)
        for st in stages_from_record(s.stages):
            for name, kw in st.method.baselines_needed(s.model, s.model_kwargs):
                t = copy.copy(base)
                t.model, t.model_kwargs = name, dict(kw)
                out.setdefault(t.run_id, t)
    return list(out.values())


def waves(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """Two waves: every baseline the grid needs (trained once, before anything uses it),
    then the other runs. Runs within a wave are independent of each other."""
    bases = required_baselines(specs)
    ids = {b.run_id for b in bases}
    rest = [s for s in order_with_baselines(specs) if s.run_id not in ids]
    return [bases, rest]


def pending(specs: list[RunSpec], results: Path) -> tuple[list[RunSpec], list[dict[str, Any]]]:
    """Split specs into those still to run and the records of those finished (ok with its
    artifact intact, or not applicable to their model); failed runs, malformed records and
    ok runs whose artifact is missing or changed are run again."""
    todo, done = [], []
    for s in specs:
        rec = read_record(results, s.run_id)
        if is_done(rec, results):
            done.append(rec)
        else:
            todo.append(s)
    return todo, done


def run_grid(specs: list[RunSpec], *, results: Path, device: torch.device,
             data_root: Path | None = None, threads: int | None = None) -> GridRecords:
    """The local executor: every run in this process, baselines first, resuming; with
    other processes on the same grid and results directory, work-stealing (`bench.steal`):
    runs they hold are left to them, each run done once by whichever process gets it.
    Records come back in grid order."""
    git_revision()  # pin the revision the grid starts from
    flush_denormals()  # before the first parallel region, so every intra-op thread has it
    if threads:
        torch.set_num_threads(threads)
    clean_orphan_temps(results)
    bases, rest = waves(specs)
    order = bases + rest
    todo, done = pending(order, results)
    needs = {s.run_id: [b.weights_spec().run_id for b in required_baselines([s])]
             for s in todo}
    producers: dict[str, list[str]] = {}
    for b in bases:
        producers.setdefault(b.weights_spec().run_id, []).append(b.run_id)
    ran, elsewhere = steal(
        todo, results=results, needs=needs, producers=producers,
        run=lambda spec: run_one(spec, results=results, device=device, data_root=data_root))
    by_id = {r["run_id"]: r for r in done} | ran
    return GridRecords((by_id[s.run_id] for s in order), resumed={r["run_id"] for r in done},
                       elsewhere=elsewhere)
