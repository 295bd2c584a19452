"""The `tables` subcommand: option parsing, `--list`, `--dry-run`, `--no-train`, and the
default (run what is missing, then write every selected table)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from bench.registry import UnknownNameError
from bench.tables.engine import Options

TABLE_SETS = ("budget.<field>", "train.<field>", "real_dataset", "real_root", "seed")


def options_from_args(args) -> Options:
    from bench.budgets import get_budget
    from bench.data import DATASETS
    from bench.options import UsageError, device, parse_sets, train_config
    from bench.runner import git_revision

    opts = Options(dataset=args.dataset, budget=args.budget, results=Path(args.results),
                   data_root=Path(args.data_root) if args.data_root else None)
    for key, val in parse_sets(args.set or []).items():
        head, _, tail = key.partition(".")
        if head == "budget" and tail:
            opts.budget_sets[tail] = val
        elif head == "train" and tail:
            opts.train_sets[tail] = val
        elif key == "real_dataset":
            opts.real_dataset = str(val)
        elif key == "real_root":
            opts.real_root = Path(str(val))
        elif key == "seed":
            if not isinstance(val, int) or val < 0:
                raise UsageError(f"--set seed expects an integer >= 0, got {val!r}")
            opts.seed = val
        else:
            raise UsageError(f"--set {key}: not a tables setting; valid: {', '.join(TABLE_SETS)}")
    DATASETS.get(opts.dataset)
    if opts.real_dataset:
        DATASETS.get(opts.real_dataset)
    # unknown fields fail here, by name; out-of-range values too (ConfigError, checked
    # when the budget and training config are created)
    get_budget(opts.budget, opts.budget_sets)
    train_config(opts.train_sets)
    opts.device = device(args.device)
    opts.revision = git_revision()
    return opts


def select(ids: list[str] | None) -> list:
    from bench.tables.catalog import all_tables

    tables = all_tables()
    for i in ids or []:
        if i not in tables:
            raise UnknownNameError(f"unknown table {i!r}; valid choices: {', '.join(tables)}")
    return [tables[i] for i in (ids or tables)]


def print_list() -> None:
    from bench.tables.catalog import all_tables

    for t in all_tables().values():
        print(f"{t.id:22s} {t.title}  ({t.report})")


def dry_run(tables: list, opts: Options) -> None:
    """Print each missing run (once, with the tables that need it) and its estimated cost;
    declarations that do not resolve are listed too. Runs nothing."""
    from tabulate import tabulate

    from bench.method import stages_from_record
    from bench.records import is_done, read_record
    from bench.tables import engine
    from bench.tables.estimate import estimate

    needed: dict[str, tuple[Any, list[str]]] = {}
    broken = []
    for t in tables:
        for p in engine.plan(t, opts):
            if p.spec is None:
                broken.append((t.id, t.rows[p.row].model, p.column, p.error))
                continue
            entry = needed.setdefault(p.spec.run_id, (p.spec, []))
            if t.id not in entry[1]:
                entry[1].append(t.id)
    rows, total, planned_baselines = [], 0.0, set()
    static_of = engine.static_of(opts)
    for run_id, (spec, ids) in needed.items():
        rec = read_record(opts.results, run_id)
        if is_done(rec, opts.results):
            continue
        try:
            e = estimate(spec, opts.results, engine.num_classes(opts), static_of,
                         planned_baselines)
        except Exception as err:  # e.g. a model that cannot be built: the run will fail
            cost = f"unknown ({type(err).__name__}: {str(err)[:60]})"
        else:
            total += e.seconds
            cost = (("≈" if e.exact else "≥") + _duration(e.seconds)
                    + (" +baseline" if e.trains_baseline else ""))
        cfg = "; ".join(x for x in (s.method.describe() for s in stages_from_record(spec.stages))
                        if x)
        kw = ",".join(f"{k}={v}" for k, v in spec.model_kwargs.items())
        rows.append([",".join(ids), spec.model + (f"({kw})" if kw else ""), spec.label, cfg,
                     run_id, "retry (failed)" if rec else "new", cost])
    print(f"{len(rows)} missing runs for {len(tables)} tables, dataset {opts.dataset}, "
          f"budget {opts.budget}; estimated {_duration(total)} on this machine "
          f"({torch.get_num_threads()} threads)")
    if rows:
        print(tabulate(rows, headers=["tables", "model", "method", "config", "run id", "state",
                                      "est. cost"], tablefmt="github", disable_numparse=True))
    if broken:
        print(f"\n{len(broken)} cells whose declaration does not resolve (shown as missing):")
        for tid, model, col, err in broken:
            print(f"  {tid} / {model} / {col}: {err}")


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def run_command(args) -> int:
    from bench.tables import engine

    if args.list:
        print_list()
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    tables = select(args.table)
    opts = options_from_args(args)
    if args.dry_run:
        dry_run(tables, opts)
        return 0
    failed = 0
    if not args.no_train:
        if engine.run_missing(tables, opts, threads=args.threads, executor=args.executor):
            failed = len(engine.tables_missing(tables, opts))  # still no final record
    out_dir = opts.results / "tables"
    for t in tables:
        rendered = engine.build(t, opts, compute_evals=not args.no_train, no_train=args.no_train)
        md, tex = engine.write(rendered, out_dir)
        print(f"tables: wrote {md} and {tex.name}", file=sys.stderr)
    if failed:  # the exit-status contract (docs/reliability.md): 1 when a run failed
        print(f"tables: {failed} run(s) failed; their cells are empty (reasons: "
              f"`python -m bench leaderboard`)", file=sys.stderr)
        return 1
    return 0
