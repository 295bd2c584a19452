"""Unstructured pruning, per run: the fraction of zero weights in every pruned layer (where
the global magnitude threshold took its weights from), and the number of nonzero prunable
weights over the fine-tuning epochs (the gradual AGP schedule's steps; one step at epoch 0
for one-shot pruning). Both come from what `prune_unstructured` reported
(`facts.UnstructuredSparsity`); epochs are fine-tuning steps over the steps one epoch of
the run's budget takes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

from bench.facts import UnstructuredSparsity, read
from bench.plots import records as R
from bench.plots.style import save, slug


def steps_per_epoch(rec: dict) -> int | None:
    """Optimizer steps in one epoch of the run's training set (drop_last batches)."""
    from bench.spec import spec_from_dict
    from bench.tables.estimate import split_size

    spec = spec_from_dict(rec["config"])
    n = split_size(spec, "train")
    if not n:
        return None
    return max(n // min(spec.budget.batch_size, n), 1)


def finetune_epochs(rec: dict) -> int:
    return int(rec["config"]["budget"]["finetune_epochs"])


def draw(rec: dict, title: str):
    info = read(rec, UnstructuredSparsity)
    cfg = next(s["config"] for s in rec["config"]["stages"]
               if s["method"] == "prune_unstructured")
    layers = list(info.layer_sparsity.items())
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(14, 4.6),
                                   gridspec_kw={"width_ratios": [2.2, 1]})
    xs = range(len(layers))
    ax0.bar(xs, [100 * z for _, z in layers], color=sns.color_palette("crest", 1)[0],
            width=0.85)
    ax0.axhline(100 * info.prunable_sparsity, color="crimson", ls="--", lw=1.2,
                label=f"overall {100 * info.prunable_sparsity:.1f} %")
    step = max(1, len(layers) // 40)
    ax0.set_xticks(list(xs)[::step], [n for n, _ in layers][::step], rotation=90, fontsize=6)
    ax0.set_ylim(0, 100)
    ax0.set_ylabel("zero weights [%]")
    ax0.set_xlabel(f"pruned layer ({len(layers)} layers, by name; "
                   f"scope {cfg.get('scope', 'global')})")
    ax0.set_title("zero-weight distribution per layer")
    ax0.legend(loc="upper left")

    total = info.prunable_weights
    spe = steps_per_epoch(rec)
    epochs = finetune_epochs(rec)
    events = [(int(s), float(x)) for s, x in info.schedule_events]
    if cfg.get("schedule") == "oneshot" or not events:
        events = [(0, float(cfg["sparsity"]))]
    unit = spe or 1
    xs1, ys1 = [0.0], [total / 1e6]
    for s, x in events:
        xs1.append(s / unit)
        ys1.append(total * (1 - x) / 1e6)
    end = epochs if spe else max(xs1[-1], 1.0)
    final_nonzero = (total - info.zero_weights) / 1e6
    xs1.append(end)
    ys1.append(final_nonzero)
    ax1.step(xs1, ys1, where="post", color="0.2", lw=1.6, marker="o", markersize=3)
    ax1.axhline(total * (1 - cfg["sparsity"]) / 1e6, color="crimson", ls="--", lw=1.2,
                label=f"target {100 * cfg['sparsity']:.0f} % sparsity")
    ax1.set_xlim(-0.04 * end, end * 1.02)  # a drop at epoch 0 (one-shot) stays visible
    ax1.set_ylim(0, total / 1e6 * 1.05)
    ax1.set_xlabel("fine-tuning epoch" if spe else "fine-tuning step")
    ax1.set_ylabel("nonzero prunable weights [M]")
    done = info.schedule_completed_in_finetuning
    ax1.set_title(f"{cfg.get('schedule', '?')} schedule"
                  + ("" if done else " (finished at finalize)"))
    ax1.legend(loc="center right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot(results: Path, out_dir: Path, models: list[str] | None = None) -> list[Path]:
    recs = [r for r in R.ok_records(results, models)
            if read(r, UnstructuredSparsity) is not None]
    written = []
    for r in recs:
        kw = R.kwargs_label(r)
        title = (f"{r['model']}{f' ({kw})' if kw else ''} · {R.method_label(r)} · "
                 f"{r['dataset']} · budget {r['budget']} · run {r['run_id']}")
        written += save(draw(r, title), out_dir, slug("sparsity", r["model"], r["run_id"]))
    return written
