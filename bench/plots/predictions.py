"""A grid of predictions on fixed validation images, per model: input, ground truth, the
baseline, then each compressed run (its reloaded artifact, through the runtime it was
evaluated with), so what a method breaks is visible (thin structures, small objects).
Columns are titled with the run's method and its validation mIoU."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from bench.plots import loading
from bench.plots import records as R
from bench.plots.style import per_group

N_IMAGES = 3
MAX_METHODS = 8  # compressed runs shown beside the baseline (smallest artifacts first)


def class_colours(n: int) -> ListedColormap:
    """Class k -> colour k; the ignore label is drawn black (index n)."""
    base = sns.color_palette("tab10" if n <= 10 else "tab20", n)
    return ListedColormap([*base, (0.0, 0.0, 0.0)])


def to_index(label: torch.Tensor, n: int, ignore: int) -> np.ndarray:
    lab = label.clone()
    lab[lab == ignore] = n
    return lab.numpy()


def pick_runs(recs: list[dict]) -> list[dict]:
    """The baseline(s) first, then at most MAX_METHODS others by artifact size."""
    bases = [r for r in recs if r["method"] == "none" and not R.kwargs_label(r)]
    bases = bases or [r for r in recs if r["method"] == "none"][:1]
    others = sorted((r for r in recs if r not in bases), key=lambda r: r["metrics"]["size_bytes"])
    return bases[:1] + others[:MAX_METHODS]


def _heading(rec: dict) -> str:
    """The run's method, its settings on a line of their own (columns are narrow)."""
    return R.method_label(rec).replace(" (", "\n(", 1)


def draw(runs: list[dict], results: Path, title: str):
    ctx = loading.run_context(runs[0], results)
    images, labels = loading.val_images(ctx, N_IMAGES)
    n_cls, ignore = ctx.num_classes, ctx.ignore_index
    cmap = class_colours(n_cls)
    preds = []
    for r in runs:
        _, predict = loading.reloaded(r, results)
        with torch.no_grad():
            preds.append(torch.as_tensor(predict(images)).argmax(1))
    cols = 2 + len(runs)
    fig, axes = plt.subplots(len(images), cols, figsize=(2.1 * cols, 2.2 * len(images) + 1.0),
                             squeeze=False)
    heads = ["input", "ground truth"] + [
        f"{'baseline' if r['method'] == 'none' else _heading(r)}\n"
        f"{R.kwargs_label(r) + chr(10) if R.kwargs_label(r) else ''}"
        f"mIoU {100 * r['metrics']['miou']:.1f}%, {r['metrics']['size_bytes'] / 1e6:.2f} MB"
        for r in runs]
    for i in range(len(images)):
        axes[i, 0].imshow(loading.display_image(images[i]))
        axes[i, 1].imshow(to_index(labels[i], n_cls, ignore), cmap=cmap, vmin=0, vmax=n_cls,
                          interpolation="nearest")
        for j, p in enumerate(preds):
            axes[i, 2 + j].imshow(p[i].numpy(), cmap=cmap, vmin=0, vmax=n_cls,
                                  interpolation="nearest")
        for j in range(cols):
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(heads[j], fontsize=7)
    names = list(ctx.info.class_names) + ["ignored"]
    fig.legend(handles=[Patch(color=cmap(k), label=names[k]) for k in range(n_cls + 1)],
               loc="lower center", ncol=min(len(names), 10), fontsize=7,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def plot(results: Path, out_dir: Path, models: list[str] | None = None) -> list[Path]:
    return per_group(results, out_dir, models, "predictions",
                     lambda recs, title: draw(pick_runs(recs), results,
                                              f"{title}: predictions on fixed validation images"))
