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
    """The runs the tables need, planned as `bench run --dry-run` plans a grid (the same
    table, states and estimates: bench/plan.py) with the tables that need each run;
    declarations that do not resolve are listed too. Runs nothing."""
    from bench.plan import make_plan, render
    from bench.tables import engine

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
    plan = make_plan([spec for spec, _ in needed.values()], opts.results)
    print(f"{len(tables)} tables, dataset {opts.dataset}, budget {opts.budget}:")
    print(render(plan, {run_id: ",".join(ids) for run_id, (_, ids) in needed.items()}))
    if broken:
        print(f"\n{len(broken)} cells whose declaration does not resolve (shown as missing):")
        for tid, model, col, err in broken:
            print(f"  {tid} / {model} / {col}: {err}")



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
