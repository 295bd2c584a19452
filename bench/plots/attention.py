"""Attention maps of teacher and student at the layers an `at` run transferred (its layer
set: output, atrous, all, ...), on one fixed validation image. The map of a layer is the
channel mean of the squared activations (Zagoruyko & Komodakis), computed by the `at`
plugin's own `attention_map` at the tap points its `select_points` chooses, so the figure
shows exactly what the loss compared. Each map is scaled to [0, 1] for display.

The student is the run's reloaded artifact; the teacher is the cached trained baseline
the run distilled from (the figure is skipped if that cache is gone: plots never train).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from bench.plots import loading
from bench.plots import records as R
from bench.plots.style import save, slug

IMAGE_INDEX = 0  # the fixed validation image
MAX_POINTS = 6  # rows shown (the first ones of the layer set) to keep the figure readable


def teacher_of(rec: dict) -> tuple[str, dict]:
    """(zoo name, kwargs) of the teacher, as methods/_distill.py `load_teacher` picks it."""
    cfg = next(s["config"] for s in rec["config"]["stages"] if s["method"] == "at")
    name = cfg.get("teacher") or rec["model"]
    kwargs = cfg.get("teacher_kwargs") or (
        rec["config"].get("model_kwargs", {}) if name == rec["model"] else {})
    return name, dict(kwargs)


def maps(model: torch.nn.Module, layers, num_classes: int, image: torch.Tensor):
    """[(tap point name, HxW attention map in [0, 1])] of `model` on `image` (1CHW)."""
    from methods._distill import FeatureTap, select_points
    from methods.at import attention_map

    points = select_points(model, layers, num_classes, tuple(image.shape))
    tap = FeatureTap(model, points)
    try:
        with torch.no_grad():
            model(image)
        out = []
        for p in points:
            a = attention_map(tap.features[p])[0, 0]
            a = (a - a.min()) / (a.max() - a.min()).clamp(min=1e-12)
            out.append((str(p), a.numpy()))
    finally:
        tap.remove()
    return out


def draw(rec: dict, teacher_name: str, image, t_maps, s_maps, title: str):
    n = min(len(s_maps), MAX_POINTS)
    fig, axes = plt.subplots(n, 3, figsize=(8.4, 2.6 * n + 0.6), squeeze=False)
    for i in range(n):
        ax_img, ax_t, ax_s = axes[i]
        if i == 0:
            ax_img.imshow(loading.display_image(image[0]))
            ax_img.set_title("input")
        ax_img.axis("off")
        ax_t.imshow(t_maps[i][1], cmap="magma", vmin=0, vmax=1)
        ax_t.set_title(f"teacher: {t_maps[i][0]}", fontsize=7)
        im = ax_s.imshow(s_maps[i][1], cmap="magma", vmin=0, vmax=1)
        ax_s.set_title(f"student: {s_maps[i][0]}", fontsize=7)
        ax_t.axis("off")
        ax_s.axis("off")
    fig.colorbar(im, ax=axes[:, 1:].ravel().tolist(), shrink=0.8,
                 label="attention (channel mean of squares, scaled)")
    extra = f" (first {n} of {len(s_maps)} layers)" if len(s_maps) > n else ""
    fig.suptitle(f"{title}\nteacher {teacher_name}{extra}", fontsize=10)
    return fig


def plot(results: Path, out_dir: Path, models: list[str] | None = None) -> list[Path]:
    written = []
    seen: set[tuple] = set()
    for rec in R.ok_records(results, models):
        stages = [s for s in rec["config"]["stages"] if s["method"] == "at"]
        if not stages:
            continue
        layers = stages[0]["config"].get("layers", "all")
        key = (rec["model"], R.kwargs_label(rec), str(layers), rec["dataset"], rec["budget"])
        if key in seen:  # one figure per student variant and layer set
            continue
        seen.add(key)
        t_name, t_kw = teacher_of(rec)
        teacher = loading.cached_baseline(rec, results, t_name, t_kw)
        if teacher is None:
            print(f"plots: skip attention of run {rec['run_id']}: the teacher's cached "
                  f"baseline ({t_name}) is not under {results}/cache", file=sys.stderr)
            continue
        ctx = loading.run_context(rec, results)
        student, _ = loading.reloaded(rec, results, ctx)
        images, _ = loading.val_images(ctx, IMAGE_INDEX + 1)
        image = images[IMAGE_INDEX:IMAGE_INDEX + 1]
        s_maps = maps(student, layers, ctx.num_classes, image)
        t_maps = maps(teacher, layers, ctx.num_classes, image)
        kw = R.kwargs_label(rec)
        title = (f"{rec['model']}{f' ({kw})' if kw else ''} · at layers={layers} · "
                 f"{rec['dataset']} · budget {rec['budget']} · run {rec['run_id']}")
        fig = draw(rec, t_name, image, t_maps, s_maps, title)
        written += save(fig, out_dir, slug("attention", rec["model"], str(layers),
                                           rec["run_id"]))
    return written
