"""`python -m bench` / `segbench`: run grids, write the leaderboard, list what exists,
verify artifacts. Bad input exits 2 with a one-line error naming the valid choices;
results go to files, progress and errors to stderr."""

from __future__ import annotations

import argparse
import functools
import sys
from collections import Counter
from pathlib import Path

from bench import validate
from bench.budgets import BUDGETS, get_budget
from bench.config import ConfigError
from bench.layout import ProtectedResultsError, guard_write
from bench.numerics import flush_denormals
from bench.options import (
    UsageError,
    add_compute_options,
    add_data_options,
    add_results_option,
    device,
    parse_sets,
    split_sets,
    train_config,
)
from bench.registry import UnknownNameError

# the contract scripts and CI rely on (docs/reliability.md); printed by every `--help`
EXIT_STATUS = """exit status:
  0  everything asked for succeeded (a run that is not applicable to its model counts as ok)
  1  some run failed, some check failed, or some record was malformed (named on stderr)
  2  usage error: bad option or value (one line on stderr naming the valid choices)
  130 interrupted (finished runs are kept; re-run to resume)"""


def _refuse(*problems: str | None) -> None:
    """The first problem found by `bench.validate`, as a usage error."""
    for p in problems:
        if p:
            raise UsageError(p)


def build_specs(args) -> list:
    from bench.budgets import train_defaults
    from bench.data import DATASETS
    from bench.method import expand_methods
    from bench.spec import EVAL_SPLITS, RunSpec
    from models import MODELS, cpu_default_models

    train_o, model_o, budget_o, method_o = split_sets(parse_sets(args.set or []))
    eval_split = str(method_o.pop("eval_split", "val"))
    if eval_split not in EVAL_SPLITS:
        raise UsageError(f"unknown eval_split {eval_split!r}; valid: {', '.join(EVAL_SPLITS)}")
    from bench.runtimes import parse_runtimes

    runtimes = parse_runtimes(method_o.pop("runtimes", None))
    DATASETS.get(args.dataset)
    budget = get_budget(args.budget, budget_o, dataset=args.dataset)
    train = train_config({**train_defaults(args.dataset), **train_o})  # both checked on creation
    names = [m.strip() for m in (args.model or "").split(",") if m.strip()]
    names = names or cpu_default_models()
    for n in names:
        MODELS.get(n)
    _refuse(*(validate.model_kwargs_problem(n, model_o, DATASETS.get(args.dataset).num_classes)
              for n in names))
    if args.seeds < 1:
        raise UsageError("--seeds must be >= 1")
    variants = expand_methods(args.method, method_o)
    _refuse(*(validate.duplicate_stage_problem(v.spec, v.resolved()) for v in variants))
    specs = []
    for model in names:
        for v in variants:
            for seed in range(args.seeds):
                specs.append(RunSpec(model=model, method=v.spec, label=v.label,
                                     stages=v.resolved(), dataset=args.dataset, budget=budget,
                                     seed=seed, model_kwargs=dict(model_o), train=train,
                                     eval_split=eval_split, runtimes=runtimes))
    return specs


def cmd_run(args) -> int:
    from bench.executors import EXECUTORS, run_specs
    from bench.leaderboard import write_leaderboard
    from bench.records import NOT_APPLICABLE, OK

    guard_write(Path(args.results), args.update_reference)
    specs = build_specs(args)
    if args.executor not in EXECUTORS:
        raise UsageError(f"unknown executor {args.executor!r}; valid choices: "
                         f"{', '.join(EXECUTORS)}")
    device(args.device)
    results = Path(args.results)
    check_eval_split(specs, args.data_root)
    from bench.plan import print_plan

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print_plan(specs, results, full=args.dry_run)
    if args.dry_run:
        return 0
    records = run_specs(specs, executor=args.executor, results=results, device=args.device,
                        data_root=Path(args.data_root) if args.data_root else None,
                        threads=args.threads)
    md, _ = write_leaderboard(results)
    counts = Counter(r.get("status") for r in records)
    n_na = counts[NOT_APPLICABLE]
    n_failed = len(records) - counts[OK] - n_na
    n_resumed, n_other = len(records.resumed), len(records.elsewhere)
    where = ([f"{n_resumed} of them finished earlier, resumed"] if n_resumed else []) + (
        [f"{n_other} done by another process meanwhile",
         f"{len(records) - n_resumed - n_other} run here"] if n_other else [])
    print(f"{counts[OK]} runs ok, " + (f"{n_na} not applicable, " if n_na else "")
          + f"{n_failed} failed" + (f" ({'; '.join(where)})" if where else "")
          + f"; leaderboard: {md}", file=sys.stderr)
    return 1 if n_failed else 0


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

    guard_write(Path(args.results), args.update_reference)
    malformed: list[Path] = []
    md, cs = write_leaderboard(Path(args.results), malformed)
    print(f"wrote {md} and {cs}" + (f" without {len(malformed)} malformed record(s)"
                                    if malformed else ""), file=sys.stderr)
    return 1 if malformed else 0


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
        print("families: " + ", ".join(sorted(families())) + ", all, headline")
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

    try:
        h, w = validate.parse_size(args.size)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.num_classes < 1:
        raise UsageError(f"--num-classes must be >= 1, got {args.num_classes}")
    names = [n.strip() for n in args.model.split(",")] if args.model else None
    rows = describe_models(names, (h, w), num_classes=args.num_classes)
    cols = ["name", "paper", "year", "params", "published_params", "madds_g", "output_stride"]
    print(tabulate([[r.get(c) for c in cols] for r in rows], headers=cols, tablefmt="github"))
    return 0


def cmd_verify(args) -> int:
    from bench.verify import verify_results

    if args.reference:
        from bench.reference import verify_reference

        return verify_reference(device_name=args.device)
    problems = verify_results(Path(args.results), device_name=args.device, runs=args.run,
                              data_root=Path(args.data_root) if args.data_root else None)
    return 1 if problems else 0


def cmd_retime(args) -> int:
    from bench.retime import known_revision, retime_results

    guard_write(Path(args.results), args.update_reference)
    if args.timed_before and not known_revision(args.timed_before):
        raise UsageError(f"--timed-before {args.timed_before!r} is not a commit of this "
                         "repository; give a commit id, tag or branch")
    failed = retime_results(Path(args.results), runs=args.run, device_name=args.device,
                            data_root=Path(args.data_root) if args.data_root else None,
                            before=args.timed_before, dry_run=args.dry_run)
    return 1 if failed else 0


def cmd_excerpts(args) -> int:
    from bench.excerpts import main as excerpts_main

    return excerpts_main(args.files, do_update=args.update)


def cmd_tables(args) -> int:
    from bench.tables import main as tables_main

    guard_write(Path(args.results), args.update_reference)
    return tables_main(args)


def cmd_plots(args) -> int:
    from bench.plots import main as plots_main

    guard_write(Path(args.results), args.update_reference)
    return plots_main(args)


def cmd_sensitivity(args) -> int:
    from bench.sensitivity import main as sensitivity_main

    return sensitivity_main(args.rest)


def _reference_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--update-reference", action="store_true",
                        help="allow writing into results/reference/ (maintainers regenerating "
                        "the committed reference)")


def _finished_runs_options(parser: argparse.ArgumentParser, verb: str) -> None:
    """What the commands that reload finished runs' artifacts (verify, retime) share."""
    add_results_option(parser)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-root", default=None,
                        help="root of a real dataset (default: the one each record names)")
    parser.add_argument("--run", action="append", metavar="RUN_ID",
                        help=f"{verb} only this run (a run-id prefix; repeatable)")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="segbench", description=__doc__, epilog=EXIT_STATUS,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    # every subcommand's --help states the exit-status contract too
    sub = p.add_subparsers(dest="command", required=True, parser_class=functools.partial(
        argparse.ArgumentParser, epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter))

    r = sub.add_parser("run", help="run the grid of methods x models x seeds")
    r.add_argument("--method", default="none",
                   help="plugin, family, a,b list, a+b pipeline, all, headline")
    r.add_argument("--model", default="", help="comma list of zoo models (default: CPU subset)")
    add_data_options(r)
    r.add_argument("--budget", default="quick", help="smoke | quick | full")
    r.add_argument("--seeds", type=int, default=1, help="run seeds 0..N-1")
    add_compute_options(r)
    r.add_argument("--executor", default="local", help="local | ray (RAY_ADDRESS to join)")
    add_results_option(r)
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override: <method field>, <stage>.<field>, train.*, model.*, budget.*, "
                   "eval_split, runtimes (comma list of torch, onnxruntime, openvino, "
                   "executorch: every row also timed there)")
    r.add_argument("--dry-run", action="store_true",
                   help="print the grid, what is done or cached and the estimated time; "
                   "run nothing")
    _reference_flag(r)
    r.set_defaults(fn=cmd_run)

    lb = sub.add_parser("leaderboard", help="write leaderboard.md and leaderboard.csv")
    add_results_option(lb)
    _reference_flag(lb)
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
    _finished_runs_options(v, "verify")
    v.add_argument("--reference", action="store_true",
                   help="regenerate every committed reference leaderboard from its records and "
                   "compare byte for byte (and re-evaluate artifacts that are present)")
    v.set_defaults(fn=cmd_verify)

    rt = sub.add_parser("retime", help="time finished runs again from their artifacts, paired "
                        "with their cached baselines; only the timing fields change")
    _finished_runs_options(rt, "re-time")
    rt.add_argument("--timed-before", metavar="REV", default=None,
                    help="only runs recorded at a git revision that does not contain REV "
                    "(e.g. a timing fix)")
    rt.add_argument("--dry-run", action="store_true", help="list the runs; time nothing")
    _reference_flag(rt)
    rt.set_defaults(fn=cmd_retime)

    ex = sub.add_parser("excerpts", help="regenerate the reference excerpts quoted in "
                        "README.md and docs/*.md (docs/leaderboard.md#excerpts-in-the-docs)")
    mode = ex.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="exit 1 naming every stale block (the default)")
    mode.add_argument("--update", action="store_true", help="rewrite the stale blocks")
    ex.add_argument("files", nargs="*", metavar="FILE.md",
                    help="markdown files (default: README.md, results/README.md, docs/*.md)")
    ex.set_defaults(fn=cmd_excerpts)

    t = sub.add_parser("tables", help="regenerate the reference reports' tables")
    t.add_argument("--table", action="append", metavar="ID", help="table id (repeatable)")
    t.add_argument("--list", action="store_true", help="list the table ids and exit")
    t.add_argument("--budget", default="quick")
    add_data_options(t)
    t.add_argument("--dry-run", action="store_true", help="list missing runs and their cost")
    t.add_argument("--no-train", action="store_true",
                   help="only the columns that need no training (params, MAdds, dense size)")
    add_compute_options(t)
    t.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local | ray: run the missing runs in parallel workers")
    add_results_option(t)
    t.add_argument("--set", action="append", metavar="KEY=VALUE")
    _reference_flag(t)
    t.set_defaults(fn=cmd_tables)

    pl = sub.add_parser("plots", help="draw the figures from the run records")
    add_results_option(pl)
    pl.add_argument("--model", default="", help="comma list (default: every model with runs)")
    pl.add_argument("--kind", default="", help="comma list of figure kinds (default: all of "
                    "pareto, sparsity, attention, predictions, confusion, sensitivity)")
    pl.add_argument("--data-root", default=None,
                    help="a real dataset's root here (default: the root each run recorded)")
    _reference_flag(pl)
    pl.set_defaults(fn=cmd_plots)

    se = sub.add_parser("sensitivity", add_help=False,
                        help="per-layer pruning sensitivity (see `sensitivity --help`)")
    se.add_argument("rest", nargs=argparse.REMAINDER)
    se.set_defaults(fn=cmd_sensitivity)
    return p


def main(argv: list[str] | None = None) -> int:
    flush_denormals()  # first, so the intra-op threads every command starts inherit it
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sensitivity"]:  # its own parser, --help included (REMAINDER eats no flags)
        from bench.sensitivity import main as sensitivity_main

        return sensitivity_main(argv[1:])
    args = make_parser().parse_args(argv)
    if getattr(args, "budget", None) is not None and args.budget not in BUDGETS:
        print(f"segbench: error: unknown budget {args.budget!r}; valid choices: "
              f"{', '.join(BUDGETS.names())}", file=sys.stderr)
        return 2
    if args.command in ("run", "tables", "leaderboard", "plots"):  # they write results
        problem = validate.results_problem(Path(args.results))
        if problem:
            print(f"segbench: error: {problem}", file=sys.stderr)
            return 2
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:  # 0 would be silently ignored, -1 an error later
        print(f"segbench: error: --threads must be an integer >= 1, got {threads}",
              file=sys.stderr)
        return 2
    try:
        return args.fn(args)
    except (UsageError, UnknownNameError, ConfigError, ProtectedResultsError) as e:
        print(f"segbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("segbench: interrupted; finished runs are saved, re-run to resume",
              file=sys.stderr)
        return 130
