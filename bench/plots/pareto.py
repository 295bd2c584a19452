"""Pareto fronts per model: validation mIoU against stored size, MAdds and measured
latency, one panel each, cost axes log-scaled. Every ok run is a point coloured by its
method and shaped by its family; baselines (`none`) are stars; the circled runs, joined by
the dashed line, are those no other run beats on both axes (lower cost and higher mIoU)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.ticker import FuncFormatter, LogLocator

from bench.plots import records as R
from bench.plots.style import save, slug

AXES = (("size_bytes", 1e6, "stored size [MB]"),
        ("madds", 1e9, "MAdds [G]"),
        ("latency_ms", 1.0, "latency [ms], batch 1"))


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated points (minimise x, maximise y), sorted by x."""
    front, best = [], float("-inf")
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


FAMILY_MARKERS = {"prune": "s", "weight_sharing": "D", "coding": "P", "quant": "^",
                  "distill": "o", "cheapconv": "v", "storage": "X"}


def family_marker(label: str) -> str:
    """A marker shape per method family (of the label's first stage), so that a dozen
    methods stay apart where colours alone would run together."""
    from bench.method import METHODS
    from bench.registry import UnknownNameError

    first = label.split(" ")[0].split("+")[0]
    try:
        family = METHODS.get(first).family or first  # no family: its own
    except UnknownNameError:  # a pipeline preset (deep_compression) or an uninstalled plugin
        family = None
    return FAMILY_MARKERS.get(family or "", "h")


def draw(recs: list[dict], title: str):
    labels = sorted({R.series_label(r) for r in recs}, key=lambda m: (m != "none", m))
    palette = dict(zip(labels, sns.color_palette("tab10" if len(labels) <= 10 else "tab20",
                                                 len(labels))))
    marker = {m: "*" if m == "none" else family_marker(m) for m in labels}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), sharey=True)
    for ax, (key, scale, xlabel) in zip(axes, AXES):
        pts = [(r["metrics"][key] / scale, 100 * r["metrics"]["miou"], r) for r in recs]
        front = pareto_front([(x, y) for x, y, _ in pts])
        if len(front) > 1:
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", ls="--",
                    color="0.45", lw=1.2, zorder=1)
        ax.scatter([p[0] for p in front], [p[1] for p in front], s=260, facecolors="none",
                   edgecolors="0.35", linewidths=1.0, zorder=2)
        for x, y, r in pts:
            lab = R.series_label(r)
            base = lab == "none"
            ax.scatter(x, y, s=160 if base else 55, marker=marker[lab],
                       color=palette[lab], edgecolor="black" if base else "white",
                       linewidth=0.8, zorder=3)
        ax.set_xscale("log")
        xs = [p[0] for p in pts]
        if max(xs) / min(xs) < 1.5:  # one cost level (e.g. MAdds of unpruned runs): pad it
            ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.35)
    axes[0].set_ylabel("validation mIoU [%]")
    handles = [plt.Line2D([], [], ls="", marker=marker[m],
                          markersize=12 if m == "none" else 7, color=palette[m],
                          markeredgecolor="black" if m == "none" else "white",
                          label="none (baseline)" if m == "none" else m) for m in labels]
    handles.append(plt.Line2D([], [], ls="--", color="0.45", marker="o", markersize=12,
                              markerfacecolor="none", markeredgecolor="0.35",
                              label="Pareto front"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), title="method")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot(results: Path, out_dir: Path, models: list[str] | None = None) -> list[Path]:
    groups = R.groups(R.ok_records(results, models))
    written = []
    for key, recs in groups.items():
        stem, title = R.group_name(key, list(groups))
        fig = draw(recs, f"{title}: accuracy against cost")
        written += save(fig, out_dir, slug("pareto", stem))
    return written
