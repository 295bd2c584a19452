"""One look for every figure, and one way to save it (PNG for the README, PDF for papers)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from bench.atomic import atomic_write  # noqa: E402

DPI = 150


def setup() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.15)
    plt.rcParams.update({"figure.dpi": DPI, "savefig.bbox": "tight", "axes.titleweight": "bold",
                         "legend.frameon": True, "pdf.fonttype": 42})


def slug(*parts: str) -> str:
    """A file-name-safe name from parts (model, kwargs, dataset, budget...)."""
    s = "-".join(p for p in parts if p)
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", s).strip("_")


def save(fig, out_dir: Path, name: str) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    atomic_write(paths[0], lambda f: fig.savefig(f, format="png", dpi=DPI))
    atomic_write(paths[1], lambda f: fig.savefig(f, format="pdf"))
    plt.close(fig)
    return paths


def per_group(results: Path, out_dir: Path, models: list[str] | None, kind: str,
              draw) -> list[Path]:
    """One `kind` figure per (model, kwargs, dataset, budget) group of finished runs:
    `draw(records, title)` returns a figure, or None when the group has nothing to show;
    a group whose figure fails (an artifact or dataset absent here) is skipped with the
    reason on stderr, and the other groups still draw."""
    import sys

    from bench.plots import records as R

    groups = R.groups(R.ok_records(results, models))
    written = []
    for key, recs in groups.items():
        stem, title = R.group_name(key, list(groups))
        try:
            fig = draw(recs, title)
        except Exception as e:
            print(f"plots: skip {kind} of {stem}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        if fig is not None:
            written += save(fig, out_dir, slug(kind, stem))
    return written
