"""Turns declared tables (bench/tables/schema.py) into run specs, the list of runs still
missing, those runs, and Markdown + booktabs LaTeX files.

Every number in a cell comes from a run record, from an evaluation of a run's artifact,
or from the freshly built model (columns that need no training); a cell that has none
says why in a footnote. Runs go through `bench.runner.run_grid`, so they are the same
runs `python -m bench run` makes (same ids, resumable, shared baselines).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.atomic import atomic_write_text
from bench.budgets import Budget, get_budget, train_defaults
from bench.records import NOT_APPLICABLE, OK, read_record
from bench.runner import pending
from bench.spec import RunSpec, TrainConfig
from bench.tables import estimate as est
from bench.tables.evals import EvalError, evaluate_record
from bench.tables.render import Cell, Rendered, fmt_value, to_latex, to_markdown
from bench.tables.schema import (
    EVAL_METRICS,
    EVAL_SOURCES,
    RECORD_METRICS,
    STATIC_METRICS,
    Derived,
    Field,
    Metric,
    Row,
    Run,
    Static,
    Table,
)
from bench.tables.static import static_metrics


@dataclass
class Options:
    """Everything outside a table's declaration that decides its numbers."""

    dataset: str = "synthetic"
    budget: str = "quick"
    budget_sets: dict[str, Any] = field(default_factory=dict)  # --set budget.*
    train_sets: dict[str, Any] = field(default_factory=dict)  # --set train.*
    seed: int = 0
    real_dataset: str | None = None  # --set real_dataset=NAME: second test set
    real_root: Path | None = None  # --set real_root=DIR (default: --data-root)
    data_root: Path | None = None
    results: Path = Path("results")
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    revision: str | None = None

    def as_flags(self) -> dict[str, Any]:
        return {"real_dataset": self.real_dataset}


def table_budget(table: Table, opts: Options) -> Budget:
    """The named budget with the table's declared overrides for it, then `--set budget.*`."""
    return get_budget(opts.budget, {**table.budget_overrides.get(opts.budget, {}),
                                    **opts.budget_sets}, dataset=opts.dataset)


def resolve(table: Table, row: Row, run: Run, opts: Options) -> RunSpec:
    """The RunSpec of `run` on `row` (the way bench/cli.py `build_specs` builds one).
    Raises UnknownNameError / ValueError when the declaration names a method or setting
    that does not exist."""
    from bench.method import expand_methods

    variants = expand_methods(run.method, {**supported(run), **dict(run.sets)})
    if len(variants) != 1:
        raise ValueError(f"{table.id}: method {run.method!r} expands to {len(variants)} "
                         f"variants; a table cell needs exactly one")
    v = variants[0]
    train = TrainConfig(**{**train_defaults(opts.dataset), **opts.train_sets,
                           **dict(run.train)})  # checked on creation
    return RunSpec(model=row.model, method=v.spec, label=v.label, stages=v.resolved(),
                   dataset=opts.dataset, budget=table_budget(table, opts), seed=opts.seed,
                   model_kwargs=dict(row.model_kwargs), train=train)


def supported(run: Run) -> dict[str, Any]:
    """The `optional` settings of `run` that some stage of its method has."""
    if not run.optional:
        return {}
    from dataclasses import fields

    from bench.method import METHODS, PIPELINES

    spec = PIPELINES.get(run.method)[0] if run.method in PIPELINES else run.method
    have = {f.name for n in spec.split("+") for f in fields(METHODS.get(n).Config)}
    return {k: v for k, v in run.optional.items() if k.rpartition(".")[2] in have}


@dataclass
class Planned:
    """A Metric cell's run: its spec, or why it has none."""

    table: str
    row: int
    column: str
    run: Run
    spec: RunSpec | None
    error: str | None = None
    dropped: list[str] = field(default_factory=list)  # optional settings the plugin lacks


def below_needed_budget(table: Table, opts: Options) -> str | None:
    """Why `table`'s run cells stay empty at this budget, or None when they can be filled."""
    if not table.needs_budget or opts.budget in (table.needs_budget, "smoke"):
        return None  # smoke is the tests' code-path check, and its caption says so
    return (f"needs `--budget {table.needs_budget}` (a GPU): a `{opts.budget}` run of these "
            f"models would print accuracies that are not results; `python -m bench tables "
            f"--table {table.id} --budget {table.needs_budget} --dry-run` lists the runs and "
            f"their estimated cost")


def plan(table: Table, opts: Options) -> list[Planned]:
    if below_needed_budget(table, opts):
        return []
    out = []
    for i, row in enumerate(table.rows):
        for col in table.columns_for(opts.as_flags()):
            if not isinstance(col, Metric):
                continue
            run = col.run or row.run
            try:
                p = Planned(table.id, i, col.name, run, resolve(table, row, run, opts))
                p.dropped = sorted(set(run.optional) - set(supported(run)))
                out.append(p)
            except (KeyError, ValueError, TypeError) as e:
                out.append(Planned(table.id, i, col.name, run, None,
                                   f"{run.describe()} does not resolve: {e}"))
    return out


def unique_specs(planned: list[Planned]) -> list[RunSpec]:
    seen, out = set(), []
    for p in planned:
        if p.spec is not None and p.spec.run_id not in seen:
            seen.add(p.spec.run_id)
            out.append(p.spec)
    return out


def missing_specs(specs: list[RunSpec], results: Path) -> list[RunSpec]:
    return pending(specs, results)[0]  # the runner's resume rule: failed runs again


def tables_missing(tables: list[Table], opts: Options) -> list[RunSpec]:
    """The runs `tables` need that have no final record (never run, or failed)."""
    return missing_specs(unique_specs([p for t in tables for p in plan(t, opts)]), opts.results)


def run_missing(tables: list[Table], opts: Options, threads: int | None = None,
                executor: str = "local") -> int:
    """Run every missing run of `tables` (baselines first, resumable) on the same executors
    as `bench run`; returns how many."""
    from bench.executors import run_specs

    specs = tables_missing(tables, opts)
    if specs:
        print(f"tables: {len(specs)} runs missing; running them ({executor})", file=sys.stderr)
        run_specs(specs, executor=executor, results=opts.results, device=str(opts.device),
                  data_root=opts.data_root, threads=threads)
    return len(specs)


# -- no-training columns ------------------------------------------------------------------

def num_classes(opts: Options) -> int:
    from bench.data import DATASETS

    return DATASETS.get(opts.dataset).num_classes


def static_size(table: Table, opts: Options) -> tuple[int, int]:
    if table.static_size is not None:
        return tuple(table.static_size)
    probe = RunSpec("", "none", "none", [], opts.dataset, table_budget(table, opts), opts.seed)
    return est.eval_hw(probe)


def static_cache(opts: Options) -> Path:
    return Path(opts.results) / "cache" / "tables" / "static"


def static_value(row: Row, metric: str, size: tuple[int, int], opts: Options) -> Any:
    return static_metrics(row.model, dict(row.model_kwargs), num_classes(opts), size,
                          static_cache(opts))[metric]


def static_of(opts: Options):
    """`static_of(model, kwargs, (H, W))` -> static metrics, for the cost estimate."""
    def f(model: str, kwargs: dict, size: tuple[int, int]) -> dict[str, Any]:
        return static_metrics(model, dict(kwargs), num_classes(opts), size, static_cache(opts))
    return f


# -- cells ----------------------------------------------------------------------------------

def _kwargs(row: Row) -> str:
    return ",".join(f"{k}={v}" for k, v in row.model_kwargs.items())


def _first_line(s: str | None, n: int = 200) -> str:
    line = (s or "").strip().splitlines()[0] if (s or "").strip() else "unknown error"
    return line if len(line) <= n else line[: n - 1] + "…"


def metric_cell(col: Metric, p: Planned, t: Rendered, opts: Options, row: Row,
                compute_evals: bool, no_train: bool, timed_on: set[str]) -> Cell:
    if p.spec is None:
        return Cell(None, "missing", t.note(p.error or "does not resolve"))
    rec = read_record(opts.results, p.spec.run_id)
    who = f"{row.model} / {p.run.describe()} (run {p.spec.run_id})"
    if rec is None:
        why = ("not run: `--no-train` makes no runs" if no_train
               else f"{who}: no run record (the run was not made)")
        return Cell(None, "not run" if no_train else "missing", t.note(why))
    if rec.get("status") == NOT_APPLICABLE:
        return Cell(None, "n/a", t.note(f"{who} not applicable: {_first_line(rec.get('error'))}"))
    if rec.get("status") != OK:
        return Cell(None, "failed", t.note(f"{who} failed: {_first_line(rec.get('error'))}"))
    if col.metric.startswith("latency"):
        env = rec.get("env", {})
        timed_on.add(f"{env.get('device', '?')} ({env.get('gpu') or env.get('processor', '?')}), "
                     f"{rec['metrics'].get('threads', env.get('threads', '?'))} thread(s), "
                     f"runtime {rec['metrics'].get('runtime', 'torch')}")
    source, _, name = col.metric.rpartition(":")
    if not source:
        value = rec["metrics"].get(name)
        if value is None:
            return Cell(None, "missing", t.note(f"{who}: the record has no metric {name!r}"))
        return Cell(value, fmt_value(col.fmt, value))
    if source == "real" and not opts.real_dataset:
        return Cell(None, "–", t.note("no second dataset given (`--set real_dataset=NAME`)"))
    dataset = opts.real_dataset if source == "real" else None
    split = "test" if source == "real" else source
    root = (opts.real_root or opts.data_root) if source == "real" else opts.data_root
    try:
        if not compute_evals and not _eval_cached(rec, opts, split, dataset):
            return Cell(None, "not run", t.note(
                f"not evaluated: `--no-train` does not score artifacts on the {split} split"))
        scores = evaluate_record(rec, opts.results, split, dataset, root, opts.device)
    except (EvalError, OSError, ValueError, KeyError, RuntimeError) as e:
        return Cell(None, "failed", t.note(f"{who}: evaluation on {dataset or opts.dataset} "
                                           f"{split} failed: {_first_line(str(e))}"))
    return Cell(scores[name], fmt_value(col.fmt, scores[name]))


def _eval_cached(rec: dict, opts: Options, split: str, dataset: str | None) -> bool:
    from bench.spec import spec_from_dict, stable_hash

    spec = spec_from_dict(rec["config"])
    key = stable_hash({"run": rec["run_id"], "dataset": dataset or spec.dataset, "split": split,
                       "eval_images": spec.budget.eval_images, "eval_size": spec.budget.eval_size})
    return (Path(opts.results) / "cache" / "tables" / "evals" / f"{key}.json").is_file()


def caption(table: Table, opts: Options, size: tuple[int, int]) -> str:
    b = table_budget(table, opts)
    over = {**table.budget_overrides.get(opts.budget, {}), **opts.budget_sets}
    over_s = (" with " + ", ".join(f"{k}={v}" for k, v in sorted(over.items()))) if over else ""
    parts = [
        f"Reproduces the {table.report}.",
        f"Dataset `{opts.dataset}`, budget `{b.name}`{over_s}, seed {opts.seed}, "
        f"code revision `{opts.revision or 'unknown'}`.",
    ]
    if any(isinstance(c, Static) for c in table.columns):
        parts.append(f"Params, MAdds, FLOPs and dense sizes are computed from the freshly "
                     f"built model ({num_classes(opts)} classes, input {size[0]}×{size[1]}), "
                     f"without training; MAdds count conv/linear multiply-adds (torchvision "
                     f"convention), FLOPs = 2 × MAdds, MB = 10^6 bytes.")
    if b.name == "smoke":
        parts.append("Budget `smoke` checks the code path (one epoch on a handful of images): "
                     "its accuracy and latency cells are not results.")
    parts += list(table.notes)
    parts += [c.note for c in table.columns if isinstance(c, Derived) and c.note]
    return " ".join(parts)


def build(table: Table, opts: Options, *, compute_evals: bool = True,
          no_train: bool = False) -> Rendered:
    """Fill every cell of `table` from records, evaluations and static counts."""
    columns = table.columns_for(opts.as_flags())
    size = static_size(table, opts)
    t = Rendered(table.id, table.title, caption(table, opts, size),
                 [c.header for c in columns],
                 [not isinstance(c, Field) and getattr(c, "fmt", "") not in ("check", "text")
                  for c in columns], [])
    planned = {(p.row, p.column): p for p in plan(table, opts)}
    deferred = below_needed_budget(table, opts)
    timed_on: set[str] = set()
    for p in planned.values():
        if p.dropped and p.run.dropped_note and p.run.dropped_note not in t.caption:
            t.caption += " " + p.run.dropped_note
    for i, row in enumerate(table.rows):
        values: dict[str, Any] = {}
        cells = []
        for col in columns:
            if isinstance(col, Field):
                v = row.fields.get(col.name, "")
                cell = Cell(v, "✓" if v is True else "" if v is False else str(v))
            elif isinstance(col, Static):
                try:
                    v = static_value(row, col.metric, size, opts)
                    cell = Cell(v, fmt_value(col.fmt, v))
                except Exception as e:  # a model that cannot be built: say so, go on
                    cell = Cell(None, "failed", t.note(
                        f"{row.model}({_kwargs(row)}) cannot be built and counted: "
                        f"{type(e).__name__}: {_first_line(str(e))}"))
            elif isinstance(col, Metric) and deferred:
                cell = Cell(None, f"needs {table.needs_budget}", t.note(deferred))
            elif isinstance(col, Metric):
                cell = metric_cell(col, planned[(i, col.name)], t, opts, row, compute_evals,
                                   no_train, timed_on)
            else:
                v = col.fn({k: values.get(k) for k in col.needs})
                cell = Cell(v, "–" if v is None else fmt_value(col.fmt, v))
            values[col.name] = cell.value
            cells.append(cell)
        t.rows.append(cells)
    if timed_on:
        t.caption += " Latency timed on " + "; ".join(sorted(timed_on)) + "."
    if opts.real_dataset and any(isinstance(c, Metric) and c.requires == "real_dataset"
                                 for c in columns):
        t.caption += f" Second dataset: `{opts.real_dataset}`."
    return t


def write(t: Rendered, out_dir: Path) -> tuple[Path, Path]:
    md, tex = Path(out_dir) / f"{t.id}.md", Path(out_dir) / f"{t.id}.tex"
    atomic_write_text(md, to_markdown(t))
    atomic_write_text(tex, to_latex(t))
    return md, tex


# -- declarations, checked ---------------------------------------------------------------------

def check_declaration(table: Table) -> list[str]:
    """Problems of a declaration that do not need a run: unknown static metrics, metric
    names, formats, Field keys or Derived inputs (run specs are checked by `plan`)."""
    from bench.tables.render import FORMATS

    problems, names = [], []
    for c in table.columns:
        if isinstance(c, Static) and c.metric not in STATIC_METRICS:
            problems.append(f"{c.header}: static metric {c.metric!r} not in {STATIC_METRICS}")
        if isinstance(c, Metric):
            source, _, name = c.metric.rpartition(":")
            ok = (name in RECORD_METRICS) if not source else (
                source in EVAL_SOURCES and name in EVAL_METRICS)
            if not ok:
                problems.append(f"{c.header}: unknown metric {c.metric!r}")
        if isinstance(c, Derived):
            problems += [f"{c.header}: needs {n!r}, not an earlier column"
                         for n in c.needs if n not in names]
        if isinstance(c, Field):
            problems += [f"row {r.model}: no field {c.name!r}" for r in table.rows
                         if c.name not in r.fields]
        if not isinstance(c, Field) and c.fmt not in FORMATS:
            problems.append(f"{c.header}: unknown format {c.fmt!r}")
        names.append(c.name)
    if len(set(names)) != len(names):
        problems.append("column names are not unique")
    return problems
