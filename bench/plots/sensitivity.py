"""Pruning sensitivity curves: validation mIoU against the sparsity of one pruned layer
(no fine-tuning), one curve per layer, from the CSVs `python -m bench sensitivity` writes
under `<results>/sensitivity/` (bench/sensitivity.py; its own heatmap sits beside them).

For a model with unstructured-pruning runs but no CSV, the analysis is run here through
bench/sensitivity.py on the run's cached baseline (never trained here), for SAMPLE_LAYERS
layers spread evenly through the network, so `make plots` draws the figure for every
pruned model without an hour of evaluation on large ones.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

from bench.plots import records as R
from bench.plots.style import save, slug

SPARSITIES = (0.25, 0.5, 0.75, 0.9)
SAMPLE_LAYERS = 8
MAX_IMAGES = 8


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k in ("sparsity", "achieved", "miou", "delta_miou", "baseline_miou"):
            r[k] = float(r[k]) if r.get(k) not in (None, "", "nan") else float("nan")
    return [r for r in rows if not r.get("error")]


def spread(names: list[str], k: int) -> list[str]:
    """k names evenly spaced from first to last (all of them if there are fewer)."""
    if len(names) <= k:
        return list(names)
    return [names[round(i * (len(names) - 1) / (k - 1))] for i in range(k)]


def ensure_csvs(results: Path, models: list[str] | None) -> None:
    """Run the analysis for pruned models whose baseline is cached and that have no CSV."""
    from bench.baseline import cache_paths
    from bench.method import METHODS
    from bench.sensitivity import run_sensitivity
    from bench.spec import RunSpec, spec_from_dict
    from methods.pruning.masks import weight_layers
    from models import create_model

    done: set[tuple] = set()
    for rec in R.ok_records(results, models):
        if rec["dataset"] != "synthetic" or not any(
                s["method"] == "prune_unstructured" for s in rec["config"]["stages"]):
            continue
        spec = spec_from_dict(rec["config"])
        key = (spec.model, spec.budget.name)
        out = Path(results) / "sensitivity" / f"{spec.model}-prune_unstructured-" \
                                              f"{spec.budget.name}.csv"
        if key in done or out.exists():
            continue
        done.add(key)
        none = METHODS.get("none")
        base = RunSpec(spec.model, "none", "none", [{"method": "none", "version": none.version,
                                                     "config": {}}],
                       "synthetic", spec.budget, 0)  # the baseline bench/sensitivity.py uses
        if not cache_paths(results, base.run_id)[0].exists():
            print(f"plots: no sensitivity for {spec.model}: its default baseline at this "
                  f"budget is not cached; run `python -m bench sensitivity --model "
                  f"{spec.model}`", file=sys.stderr)
            continue
        layers = spread(list(weight_layers(create_model(spec.model, num_classes=2))),
                        SAMPLE_LAYERS)
        print(f"plots: sensitivity of {spec.model} ({len(layers)} layers x {len(SPARSITIES)} "
              f"sparsities)", file=sys.stderr)
        run_sensitivity(spec.model, "prune_unstructured", Path(results), spec.budget, "cpu",
                        SPARSITIES, layers, max_images=MAX_IMAGES)


def draw(rows: list[dict], title: str):
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    palette = sns.color_palette("viridis", len(layers))
    base = rows[0]["baseline_miou"]
    fig, ax = plt.subplots(figsize=(9, 5))
    for c, layer in zip(palette, layers):
        pts = sorted((r["sparsity"], r["miou"]) for r in rows if r["layer"] == layer)
        ax.plot([0.0] + [p[0] for p in pts], [100 * base] + [100 * p[1] for p in pts],
                marker="o", markersize=4, lw=1.5, color=c, label=layer)
    ax.axhline(100 * base, color="0.4", ls=":", lw=1, label="baseline (dense)")
    ax.set_xlabel("sparsity of the one pruned layer (magnitude, no fine-tuning)")
    ax.set_ylabel("validation mIoU [%]")
    ax.set_xlim(-0.02, 1.0)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7,
              title="layer (input → output)", title_fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot(results: Path, out_dir: Path, models: list[str] | None = None) -> list[Path]:
    ensure_csvs(results, models)
    written = []
    for path in sorted((Path(results) / "sensitivity").glob("*.csv")):
        rows = read_csv(path)
        if not rows or (models and rows[0]["model"] not in models):
            continue
        r0 = rows[0]
        title = (f"{r0['model']}: {r0['method']} sensitivity per layer · budget {r0['budget']}"
                 f" · baseline mIoU {100 * r0['baseline_miou']:.1f}%"
                 + (f" on {r0['eval_images']} validation images" if r0.get("eval_images")
                    else ""))
        written += save(draw(rows, title), out_dir, slug("sensitivity", path.stem))
    return written
