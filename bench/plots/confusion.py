"""Confusion matrices on the validation split, per model: the baseline's, and beside it the
compressed run that lost the most mIoU, both row-normalised (each true class's pixels, where
they went), so a reader sees which classes a model confuses and what compression breaks
(on CamVid: poles and signs absorbed by building and tree). Each is recomputed from the
reloaded artifact, through the runtime the run was evaluated with."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns
import torch

from bench.evaluate import confusion
from bench.plots import loading
from bench.plots import records as R
from bench.plots.style import per_group


def pick_runs(recs: list[dict]) -> list[dict]:
    """The baseline, then the run with the largest mIoU drop below it (if any)."""
    bases = [r for r in recs if r["method"] == "none" and not R.kwargs_label(r)]
    bases = bases or [r for r in recs if r["method"] == "none"][:1]
    if not bases:
        return []
    others = [r for r in recs if r["method"] != "none"]
    worst = min(others, key=lambda r: r["metrics"]["miou"], default=None)
    return bases[:1] + ([worst] if worst and worst["metrics"]["miou"] < bases[0]["metrics"]["miou"]
                        else [])


def row_normalised(rec: dict, results: Path) -> tuple[torch.Tensor, list[str]]:
    ctx = loading.run_context(rec, results)
    _, predict = loading.reloaded(rec, results, ctx)
    conf = confusion(lambda x: torch.as_tensor(predict(x)), ctx.eval_batches("val"),
                     ctx.num_classes, ctx.ignore_index, torch.device("cpu")).double()
    return conf / conf.sum(1, keepdim=True).clamp(min=1), list(ctx.info.class_names)


def draw(runs: list[dict], results: Path, title: str):
    mats = [row_normalised(r, results) for r in runs]
    names = mats[0][1]
    n = len(names)
    fig, axes = plt.subplots(1, len(runs), figsize=(0.55 * n * len(runs) + 1.5, 0.5 * n + 1.5),
                             squeeze=False)
    for ax, r, (m, _) in zip(axes[0], runs, mats):
        sns.heatmap(100 * m.numpy(), ax=ax, vmin=0, vmax=100, cmap="viridis", square=True,
                    annot=n <= 12, fmt=".0f", annot_kws={"fontsize": 6}, cbar=False,
                    xticklabels=names, yticklabels=names)
        who = "baseline" if r["method"] == "none" else R.method_label(r)
        ax.set_title(f"{who}: mIoU {100 * r['metrics']['miou']:.1f}%", fontsize=8)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true (row %)", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot(results: Path, out_dir: Path, models: list[str] | None = None) -> list[Path]:
    def one(recs: list[dict], title: str):
        runs = pick_runs(recs)
        return draw(runs, results, f"{title}: confusion on the validation split") if runs \
            else None

    return per_group(results, out_dir, models, "confusion", one)
