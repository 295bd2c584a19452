"""Attention maps of teacher and student at the layers an `at` run transferred (its layer
set: output, atrous, all, ...), on one fixed validation image. The map of a layer is the
channel mean of the squared activations (Zagoruyko & Komodakis), computed by the
`attention_map` the `at` plugin uses (methods/distill/layers.py) at the tap points its
`select_points` chooses, so the figure shows exactly what the loss compared.
Each map is scaled to [0, 1] for display.

The student is the run's reloaded artifact; the teacher is the cached trained baseline
the run distilled from (the figure is skipped if that cache is gone: plots never train).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from bench.facts import Teacher, read
from bench.plots import loading
from bench.plots import records as R
from bench.plots.style import save, slug

IMAGE_INDEX = 0  # the fixed validation image
MAX_POINTS = 6  # rows shown (the first ones of the layer set) to keep the figure readable


def maps(model: torch.nn.Module, layers, num_classes: int, image: torch.Tensor):
    """[(tap point name, HxW attention map in [0, 1])] of `model` on `image` (1CHW)."""
    from methods.distill.layers import FeatureTap, attention_map, select_points

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


def draw(teacher_name: str, image, label, num_classes: int, ignore: int, t_maps, s_maps,
         title: str):
    """Row 1: teacher, row 2: student; a column per tap point; input and label on the left."""
    from bench.plots.predictions import class_colours, to_index

    n = min(len(s_maps), MAX_POINTS)
    fig, axes = plt.subplots(2, n + 1, figsize=(2.3 * (n + 1) + 1.2, 5.4), squeeze=False,
                             gridspec_kw={"wspace": 0.3})
    axes[0, 0].imshow(loading.display_image(image[0]))
    axes[0, 0].set_title("input", fontsize=9)
    axes[1, 0].imshow(to_index(label, num_classes, ignore), cmap=class_colours(num_classes),
                      vmin=0, vmax=num_classes, interpolation="nearest")
    axes[1, 0].set_title("ground truth", fontsize=9)
    for j in range(n):
        axes[0, j + 1].imshow(t_maps[j][1], cmap="magma", vmin=0, vmax=1,
                              interpolation="nearest")
        axes[0, j + 1].set_title(t_maps[j][0], fontsize=7)
        im = axes[1, j + 1].imshow(s_maps[j][1], cmap="magma", vmin=0, vmax=1,
                                   interpolation="nearest")
        axes[1, j + 1].set_title(s_maps[j][0], fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    axes[0, 1].set_ylabel(f"teacher\n{teacher_name}", fontsize=9)
    axes[1, 1].set_ylabel("student", fontsize=9)
    fig.colorbar(im, ax=axes[:, 1:].ravel().tolist(), fraction=0.025, pad=0.02,
                 label="attention (scaled)")
    extra = f"; first {n} of {len(s_maps)} layers" if len(s_maps) > n else ""
    fig.suptitle(f"{title}\nattention = channel mean of squared activations{extra}",
                 fontsize=10)
    return fig


def plot(results: Path, out_dir: Path, models: list[str] | None = None) -> list[Path]:
    written = []
    seen: set[tuple] = set()
    for rec in R.ok_records(results, models):
        stages = [s for s in rec["config"]["stages"] if s["method"] == "at"]
        if not stages:
            continue
        layers = stages[0]["config"].get("layers", "all")
        pipeline = R.run_label(rec)  # `at`, or e.g. `cheapconv+at`
        key = (rec["model"], R.kwargs_label(rec), pipeline, str(layers), rec["dataset"],
               rec["budget"])
        if key in seen:  # one figure per student variant, pipeline and layer set
            continue
        seen.add(key)
        fact = read(rec, Teacher)  # the teacher the run reports it distilled from
        if fact is None:
            print(f"plots: skip attention of run {rec['run_id']}: its record names no "
                  f"teacher", file=sys.stderr)
            continue
        t_name = fact.model
        teacher = loading.cached_baseline(rec, results, t_name, fact.model_kwargs)
        if teacher is None:
            print(f"plots: skip attention of run {rec['run_id']}: the teacher's cached "
                  f"baseline ({t_name}) is not under {results}/cache", file=sys.stderr)
            continue
        ctx = loading.run_context(rec, results)
        student, _ = loading.reloaded(rec, results, ctx)
        images, labels = loading.val_images(ctx, IMAGE_INDEX + 1)
        image = images[IMAGE_INDEX:IMAGE_INDEX + 1]
        s_maps = maps(student, layers, ctx.num_classes, image)
        t_maps = maps(teacher, layers, ctx.num_classes, image)
        kw = R.kwargs_label(rec)
        title = (f"{rec['model']}{f' ({kw})' if kw else ''} · {pipeline} layers={layers} · "
                 f"{rec['dataset']} · budget {rec['budget']} · run {rec['run_id']}")
        fig = draw(t_name, image, labels[IMAGE_INDEX], ctx.num_classes, ctx.ignore_index,
                   t_maps, s_maps, title)
        written += save(fig, out_dir, slug("attention", rec["model"],
                                           "" if pipeline == "at" else pipeline, str(layers),
                                           rec["run_id"]))
    return written
