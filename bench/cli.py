"""`python -m bench` / `segbench`: run grids, write the leaderboard, list what exists,
verify artifacts. Bad input exits 2 with a one-line error naming the valid choices;
results go to files, progress and errors to stderr."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.budgets import BUDGETS, get_budget
from bench.registry import UnknownNameError

DEFAULT_RESULTS = Path("results")


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


def parse_sets(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def split_sets(sets: dict[str, Any]) -> tuple[dict, dict, dict, dict]:
    """--set keys by target: train.*, model.*, budget.*, and the rest for the method."""
    train, model, budget, method = {}, {}, {}, {}
    for k, v in sets.items():
        head, _, tail = k.partition(".")
        if head == "train" and tail:
            train[tail] = v
        elif head == "model" and tail:
            model[tail] = v
        elif head == "budget" and tail:
            budget[tail] = v
        else:
            method[k] = v
    return train, model, budget, method


def build_specs(args) -> list:
    import dataclasses

    from bench.budgets import train_defaults
    from bench.data import DATASETS
    from bench.method import expand_methods
    from bench.spec import EVAL_SPLITS, RunSpec, TrainConfig
    from models import MODELS, cpu_default_models

    train_o, model_o, budget_o, method_o = split_sets(parse_sets(args.set or []))
    eval_split = str(method_o.pop("eval_split", "val"))
    if eval_split not in EVAL_SPLITS:
        raise UsageError(f"unknown eval_split {eval_split!r}; valid: {', '.join(EVAL_SPLITS)}")
    DATASETS.get(args.dataset)
    budget = get_budget(args.budget, budget_o, dataset=args.dataset)
    valid_train = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(train_o) - valid_train)
    if bad:
        raise UnknownNameError(f"unknown train setting(s) {', '.join(bad)}; valid: "
                               f"{', '.join(sorted(valid_train))}")
    train = TrainConfig(**{**train_defaults(args.dataset), **train_o})
    train.validate()
    names = [m.strip() for m in (args.model or "").split(",") if m.strip()]
    names = names or cpu_default_models()
    for n in names:
        MODELS.get(n)
    if args.seeds < 1:
        raise UsageError("--seeds must be >= 1")
    variants = expand_methods(args.method, method_o)
    specs = []
    for model in names:
        for v in variants:
            for seed in range(args.seeds):
                specs.append(RunSpec(model=model, method=v.spec, label=v.label,
                                     stages=v.resolved(), dataset=args.dataset, budget=budget,
                                     seed=seed, model_kwargs=dict(model_o), train=train,
                                     eval_split=eval_split))
    return specs


def cmd_run(args) -> int:
    from bench.executors import EXECUTORS, run_specs
    from bench.leaderboard import write_leaderboard
    from bench.records import NOT_APPLICABLE, OK
    from bench.runner import resolve_device

    specs = build_specs(args)
    if args.executor not in EXECUTORS:
        raise UsageError(f"unknown executor {args.executor!r}; valid choices: "
                         f"{', '.join(EXECUTORS)}")
    try:
        resolve_device(args.device)
    except (RuntimeError, ValueError) as e:
        raise UsageError(str(e)) from None
    results = Path(args.results)
    check_eval_split(specs, args.data_root)
    records = run_specs(specs, executor=args.executor, results=results, device=args.device,
                        data_root=Path(args.data_root) if args.data_root else None,
                        threads=args.threads)
    md, _ = write_leaderboard(results)
    counts = Counter(r.get("status") for r in records)
    n_na = counts[NOT_APPLICABLE]
    print(f"{counts[OK]} runs ok, " + (f"{n_na} not applicable, " if n_na else "")
          + f"{len(records) - counts[OK] - n_na} failed; leaderboard: {md}", file=sys.stderr)
    return 0


def check_eval_split(specs: list, data_root: str | None) -> None:
    """A split other than val is read before the grid starts, so a missing one is a
    one-line usage error rather than a failed record per run."""
    from bench.data import DATASETS, DatasetLayoutError

    for split, dataset in sorted({(s.eval_split, s.dataset) for s in specs}):
        info = DATASETS.get(dataset)
        if split == "val" or not info.needs_root or data_root is None:
            continue
        budget = next(s.budget for s in specs if s.dataset == dataset)
        try:
            info.builder(split, Path(data_root), budget, 0, False)
        except DatasetLayoutError as e:
            first = str(e).splitlines()[0].split(". Expected")[0]
            raise UsageError(f"eval_split={split}: {first}") from None


def cmd_leaderboard(args) -> int:
    from bench.leaderboard import write_leaderboard

    md, cs = write_leaderboard(Path(args.results))
    print(f"wrote {md} and {cs}", file=sys.stderr)
    return 0


def cmd_list(args) -> int:
    from bench.data import DATASETS
    from bench.method import METHODS, PIPELINES, families
    from models import MODELS

    what = args.what
    if what in (None, "models"):
        print("models:")
        for n in MODELS.names():
            info = MODELS.get(n)
            flag = " (cpu default)" if info.cpu_default else ""
            print(f"  {n:28s} {info.paper} {info.year or ''}{flag}")
    if what in (None, "methods"):
        print("methods:")
        for n in METHODS.names():
            cls = METHODS.get(n)
            print(f"  {n:28s} family={cls.family or n} v{cls.version}")
        for n in PIPELINES.names():
            print(f"  {n:28s} = {PIPELINES.get(n)[0]}")
        print("families: " + ", ".join(sorted(families())) + ", all")
    if what in (None, "datasets"):
        print("datasets:")
        for n in DATASETS.names():
            d = DATASETS.get(n)
            src = "on disk (--data-root)" if d.needs_root else "embedded"
            print(f"  {n:28s} {d.num_classes} classes, {src}, version {d.version}")
    if what in (None, "budgets"):
        print("budgets: " + ", ".join(BUDGETS.names()))
    return 0


def cmd_zoo(args) -> int:
    from tabulate import tabulate

    from models.describe import describe_models

    h, w = (int(x) for x in args.size.lower().split("x"))
    names = [n.strip() for n in args.model.split(",")] if args.model else None
    rows = describe_models(names, (h, w), num_classes=args.num_classes)
    cols = ["name", "paper", "year", "params", "published_params", "madds_g", "output_stride"]
    print(tabulate([[r.get(c) for c in cols] for r in rows], headers=cols, tablefmt="github"))
    return 0


def cmd_verify(args) -> int:
    from bench.verify import verify_results

    problems = verify_results(Path(args.results), device_name=args.device, runs=args.run,
                              data_root=Path(args.data_root) if args.data_root else None)
    return 1 if problems else 0


def cmd_tables(args) -> int:
    from bench.tables import main as tables_main

    return tables_main(args)


def cmd_plots(args) -> int:
    from bench.plots import main as plots_main

    return plots_main(args)


def cmd_sensitivity(args) -> int:
    from bench.sensitivity import main as sensitivity_main

    return sensitivity_main(args.rest)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="segbench", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the grid of methods x models x seeds")
    r.add_argument("--method", default="none", help="plugin, family, a,b list, a+b pipeline, all")
    r.add_argument("--model", default="", help="comma list of zoo models (default: CPU subset)")
    r.add_argument("--dataset", default="synthetic")
    r.add_argument("--data-root", default=None, help="root of a real dataset on local disk")
    r.add_argument("--budget", default="quick", help="smoke | quick | full")
    r.add_argument("--seeds", type=int, default=1, help="run seeds 0..N-1")
    r.add_argument("--device", default="auto", help="auto | cpu | cuda")
    r.add_argument("--threads", type=int, default=None, help="torch CPU threads (recorded)")
    r.add_argument("--executor", default="local", help="local | ray (RAY_ADDRESS to join)")
    r.add_argument("--results", default=str(DEFAULT_RESULTS))
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override: <method field>, <stage>.<field>, train.*, model.*, budget.*")
    r.set_defaults(fn=cmd_run)

    lb = sub.add_parser("leaderboard", help="write leaderboard.md and leaderboard.csv")
    lb.add_argument("--results", default=str(DEFAULT_RESULTS))
    lb.set_defaults(fn=cmd_leaderboard)

    ls = sub.add_parser("list", help="list models, methods, datasets or budgets")
    ls.add_argument("what", nargs="?", choices=["models", "methods", "datasets", "budgets"])
    ls.set_defaults(fn=cmd_list)

    z = sub.add_parser("zoo", help="params and MAdds of every zoo model at an input size")
    z.add_argument("--size", default="128x128", help="HxW")
    z.add_argument("--num-classes", type=int, default=21)
    z.add_argument("--model", default="", help="comma list (default: all)")
    z.set_defaults(fn=cmd_zoo)

    v = sub.add_parser("verify", help="reload every artifact and confirm its recorded results")
    v.add_argument("--results", default=str(DEFAULT_RESULTS))
    v.add_argument("--device", default="cpu")
    v.add_argument("--data-root", default=None,
                   help="root of a real dataset (default: the one each record names)")
    v.add_argument("--run", action="append", metavar="RUN_ID",
                   help="verify only this run (a run-id prefix; repeatable)")
    v.set_defaults(fn=cmd_verify)

    t = sub.add_parser("tables", help="regenerate the reference reports' tables")
    t.add_argument("--table", action="append", metavar="ID", help="table id (repeatable)")
    t.add_argument("--list", action="store_true", help="list the table ids and exit")
    t.add_argument("--budget", default="quick")
    t.add_argument("--dataset", default="synthetic")
    t.add_argument("--data-root", default=None)
    t.add_argument("--dry-run", action="store_true", help="list missing runs and their cost")
    t.add_argument("--no-train", action="store_true",
                   help="only the columns that need no training (params, MAdds, dense size)")
    t.add_argument("--device", default="auto")
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local | ray: run the missing runs in parallel workers")
    t.add_argument("--results", default=str(DEFAULT_RESULTS))
    t.add_argument("--set", action="append", metavar="KEY=VALUE")
    t.set_defaults(fn=cmd_tables)

    pl = sub.add_parser("plots", help="draw the figures from the run records")
    pl.add_argument("--results", default=str(DEFAULT_RESULTS))
    pl.add_argument("--model", default="", help="comma list (default: every model with runs)")
    pl.add_argument("--kind", default="", help="comma list of figure kinds (default: all of "
                    "pareto, sparsity, attention, predictions, sensitivity)")
    pl.set_defaults(fn=cmd_plots)

    se = sub.add_parser("sensitivity", add_help=False,
                        help="per-layer pruning sensitivity (see `sensitivity --help`)")
    se.add_argument("rest", nargs=argparse.REMAINDER)
    se.set_defaults(fn=cmd_sensitivity)
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if getattr(args, "budget", None) is not None and args.budget not in BUDGETS:
        print(f"segbench: error: unknown budget {args.budget!r}; valid choices: "
              f"{', '.join(BUDGETS.names())}", file=sys.stderr)
        return 2
    try:
        return args.fn(args)
    except (UsageError, UnknownNameError) as e:
        print(f"segbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("segbench: interrupted; finished runs are saved, re-run to resume",
              file=sys.stderr)
        return 130
