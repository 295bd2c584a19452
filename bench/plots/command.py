"""The `plots` subcommand: every figure kind over the records under `--results`, written
to `<results>/plots/`. A figure kind that fails is reported and the others still draw."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

KINDS = ("pareto", "sparsity", "attention", "predictions", "confusion", "sensitivity")


def _names(text: str | None) -> list[str]:
    """The names of a comma list (`--model a,b`, `--kind pareto,attention`)."""
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def run_command(args) -> int:
    import importlib

    from bench.plots.records import ok_records
    from bench.plots.style import setup

    results = Path(args.results)
    kinds = _names(getattr(args, "kind", ""))
    bad = sorted(set(kinds) - set(KINDS))
    if bad:
        from bench.registry import UnknownNameError

        raise UnknownNameError(f"unknown figure kind(s) {', '.join(bad)}; valid choices: "
                               f"{', '.join(KINDS)}")
    models = _names(args.model) or None
    if models:
        from models import MODELS

        for m in models:
            MODELS.get(m)  # an unknown name exits 2 listing the zoo
    if not ok_records(results, models):
        print(f"plots: no finished runs under {results}/runs"
              + (f" for {', '.join(models)}" if models else "")
              + "; run `make bench` or `make tables` first", file=sys.stderr)
        return 1
    if getattr(args, "data_root", None):
        from bench.plots import loading

        loading.DATA_ROOT = Path(args.data_root)
    setup()
    out_dir = results / "plots"
    written, failed = [], []
    for kind in [k for k in KINDS if k in kinds] if kinds else KINDS:
        mod = importlib.import_module(f"bench.plots.{kind}")
        try:
            paths = mod.plot(results, out_dir, models)
        except Exception as e:  # one broken figure kind must not hide the others
            failed.append(kind)
            print(f"plots: {kind} failed: {type(e).__name__}: {e}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            continue
        written += paths
        print(f"plots: {kind}: {len(paths) // 2} figures", file=sys.stderr)
    print(f"plots: wrote {len(written)} files under {out_dir}", file=sys.stderr)
    return 1 if failed else 0
