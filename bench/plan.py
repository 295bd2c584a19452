"""What `bench run` is about to do and what it will cost, before it starts: the grid in the
order the runner takes it (every baseline first, then the runs), which runs are already
done, which baselines are cached, and an estimated time per run and in total.

A run's time comes from this machine's own finished records where there are some: the
median own compute (`cost.run_s`, baselines excluded) of ok runs with the same model,
method, budget and dataset, whose stages declare the same cost factors (`Method.cost_factor`:
a finished minmax PTQ run does not price an AdaRound one), at the same thread count and
processor, and for a baseline to
be trained the median training time those records carry; next from the committed
reference's records (`results/reference/*/runs/`) under the same conditions. Without
either it falls back to the MAdds model of `bench/tables/estimate.py` (the one `tables
--dry-run` uses; its constants and their provenance are documented there), labelled as
such: its throughput is measured when it runs, so a machine busy with other work
estimates long. The stages' cost factors scale its non-training part there.
"""

from __future__ import annotations

import platform
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.method import stage_cost_factors
from bench.records import FAILED, OK, iter_records, read_record
from bench.spec import RunSpec

DONE, CACHED, NEW, RETRY = "done", "baseline cached", "new", "retry (failed)"


@dataclass
class PlannedRun:
    spec: RunSpec
    wave: str  # "baseline" or "run"
    state: str  # DONE, CACHED, NEW, RETRY
    seconds: float  # 0 when done
    source: str  # where the time comes from: "records (n)", "estimate", "–"
    trains_baseline: bool


def _machine() -> str:
    return platform.processor() or platform.machine()


def _loose_key(model: str, method: str, budget: str, dataset: str,
               kwargs: dict[str, Any], stages: list[dict[str, Any]]) -> tuple:
    return (model, tuple(sorted((k, str(v)) for k, v in kwargs.items())), method, budget,
            dataset, tuple(round(f, 2) for f in stage_cost_factors(stages)))


def _spec_key(spec: RunSpec) -> tuple:
    return _loose_key(spec.model, spec.method, spec.budget.name, spec.dataset,
                      spec.model_kwargs, spec.stages)


class RecordTimes:
    """Own compute and baseline training seconds of this machine's finished runs, by
    (model, kwargs, method, budget, dataset, stage cost factors), at the current thread
    count."""

    def __init__(self, dirs: list[Path], threads: int):
        self.run_s: dict[tuple, list[float]] = defaultdict(list)
        self.train_s: dict[tuple, list[float]] = defaultdict(list)
        for r in (r for d in dirs for r in iter_records(d)):
            env, cost = r.get("env") or {}, r.get("cost") or {}
            if (r.get("status") != OK or "run_s" not in cost or env.get("threads") != threads
                    or env.get("processor") != _machine()):
                continue
            cfg = r.get("config") or {}
            key = _loose_key(r["model"], r["method"], r["budget"], r["dataset"],
                             cfg.get("model_kwargs") or {}, cfg.get("stages") or [])
            self.run_s[key].append(float(cost["run_s"]))
            if r["method"] == "none" and (r.get("baseline") or {}).get("trained_now"):
                self.train_s[key].append(float(cost.get("baselines_s", 0.0)))

    def own(self, spec: RunSpec) -> tuple[float, int] | None:
        xs = self.run_s.get(_spec_key(spec))
        return (statistics.median(xs), len(xs)) if xs else None

    def training(self, spec: RunSpec) -> tuple[float, int] | None:
        xs = self.train_s.get(_spec_key(spec.baseline_spec()))
        return (statistics.median(xs), len(xs)) if xs else None


def reference_dirs() -> list[Path]:
    """Result directories of the committed reference (`results/reference/<name>/runs/`),
    measured on the 2-core development machine: a run's second source of timings."""
    root = Path(__file__).resolve().parents[1] / "results" / "reference"
    return sorted(d for d in root.glob("*") if (d / "runs").is_dir())


def make_plan(specs: list[RunSpec], results: Path) -> list[PlannedRun]:
    """Every run the grid will execute or skip, in the runner's order, with its time."""
    from bench.baseline import cache_paths
    from bench.data import DATASETS
    from bench.runner import pending, waves
    from bench.tables.estimate import estimate
    from bench.tables.static import static_metrics

    results = Path(results)
    threads = torch.get_num_threads()
    sources = [("records", RecordTimes([results], threads)),
               ("reference records", RecordTimes(reference_dirs(), threads))]
    static_dir = results / "cache" / "tables" / "static"
    planned_baselines: set[str] = set()
    out: list[PlannedRun] = []
    for wave_name, wave in zip(("baseline", "run"), waves(specs)):
        todo, _ = pending(wave, results)
        todo_ids = {s.run_id for s in todo}
        for spec in wave:
            if spec.run_id not in todo_ids:
                out.append(PlannedRun(spec, wave_name, DONE, 0.0, "–", False))
                continue
            rec = read_record(results, spec.run_id)
            weights = spec.weights_spec().run_id  # a baseline's trained weights
            cached = spec.is_baseline and cache_paths(results, weights)[0].exists()
            state = RETRY if rec and rec.get("status") == FAILED else CACHED if cached else NEW
            trains = spec.is_baseline and not cached and weights not in planned_baselines
            for label, times in sources:
                own, train = times.own(spec), times.training(spec) if trains else None
                if own is not None and (not trains or train is not None):
                    seconds = own[0] + (train[0] if train else 0.0)
                    source = f"{label} ({own[1]})"
                    if trains:
                        planned_baselines.add(weights)
                    break
            else:
                classes = DATASETS.get(spec.dataset).num_classes

                def static_of(model, kwargs, size, _c=classes):
                    return static_metrics(model, dict(kwargs), _c, size, static_dir)

                try:
                    e = estimate(spec, results, classes, static_of, planned_baselines)
                except Exception as err:  # e.g. a model that cannot be built: it will fail
                    seconds, source = 0.0, f"unknown ({type(err).__name__}: {str(err)[:60]})"
                else:
                    seconds, trains = e.seconds, e.trains_baseline
                    # real data without an image cap: counts guessed, so a lower bound
                    source = "estimate" if e.exact else "estimate (at least)"
            out.append(PlannedRun(spec, wave_name, state, seconds, source, trains))
    return out


def duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def summary(plan: list[PlannedRun]) -> str:
    """The plan in one line: counts by state and the estimated total."""
    n = defaultdict(int)
    for p in plan:
        n[p.state] += 1
    from bench.tables.estimate import (
        NETWORK_EFFICIENCY,
        madds_per_second,
        now_madds_per_second,
    )

    total = sum(p.seconds for p in plan)
    from_records = sum(p.seconds for p in plan if "records" in p.source)
    estimated = any(p.source == "estimate" for p in plan)
    trains = sum(p.trains_baseline for p in plan)
    parts = [f"{len(plan)} runs", f"{n[DONE]} done"]
    if n[CACHED]:
        parts.append(f"{n[CACHED]} with a cached baseline")
    if n[RETRY]:
        parts.append(f"{n[RETRY]} to retry")
    parts.append(f"{n[NEW]} new ({trains} baseline{'s' if trains != 1 else ''} to train)")
    where = (f"{duration(from_records)} of it from finished records, the rest from the "
             f"MAdds estimate at the {NETWORK_EFFICIENCY * madds_per_second() / 1e9:.1f} "
             f"GMAdds/s this machine has reached, "
             f"{NETWORK_EFFICIENCY * now_madds_per_second() / 1e9:.1f} now"
             if estimated else "from finished records")
    return (", ".join(parts) + f"; estimated {duration(total)} on this machine "
            f"({torch.get_num_threads()} threads; {where})")


def render(plan: list[PlannedRun], needed_by: dict[str, str] | None = None) -> str:
    """The plan as a table and its summary line; `needed_by` (run id -> what asks for the
    run, e.g. the tables of `bench tables --dry-run`) adds a first column."""
    from tabulate import tabulate

    from bench.method import stages_from_record

    rows = []
    for p in plan:
        s = p.spec
        cfg = "; ".join(x for x in (st.method.describe() for st in stages_from_record(s.stages))
                        if x)
        kw = ",".join(f"{k}={v}" for k, v in s.model_kwargs.items())
        est = "–" if p.state == DONE else "?" if p.source.startswith("unknown") else (
            duration(p.seconds) + (" +train" if p.trains_baseline else ""))
        row = [p.wave, s.model + (f"({kw})" if kw else ""), s.label, cfg, s.seed,
               s.run_id, p.state, est, p.source]
        rows.append(row if needed_by is None else [needed_by.get(s.run_id, "(baseline)"), *row])
    headers = ["wave", "model", "method", "config", "seed", "run id", "state", "est. time",
               "from"]
    table = tabulate(rows, headers=headers if needed_by is None else ["needed by", *headers],
                     tablefmt="github", disable_numparse=True)
    return table + "\n\n" + summary(plan)


def print_plan(specs: list[RunSpec], results: Path, full: bool) -> list[PlannedRun]:
    """`full`: the whole table on stdout (`--dry-run`); else the one-line summary on
    stderr, before a real run starts."""
    plan = make_plan(specs, results)
    if full:
        print(render(plan))
    else:
        print(f"plan: {summary(plan)}", file=sys.stderr)
    return plan
