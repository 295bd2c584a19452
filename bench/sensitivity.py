"""Per-layer pruning sensitivity (Han et al. 2015, Fig. 6; Li et al. 2017, Fig. 2): prune
one layer at a time over a sparsity sweep, evaluate without fine-tuning, and see which
layers a model cannot afford to thin.

`--method prune_unstructured` zeroes the smallest-magnitude weights of one conv/linear
layer; `--method prune_structured` removes the lowest-L1 channels of one torch-pruning
group (a layer and everything coupled to it). Every row is measured on the trained
baseline of the run's budget (trained and cached under `--results` if missing), so the
numbers line up with the leaderboard's `none` row. Output: `<results>/sensitivity/
<model>-<method>-<budget>.csv` and a heatmap `.png` of ΔmIoU beside it (`--results`
defaults to the user's `results/local`; the committed reference needs `--update-reference`).

    python -m bench sensitivity --model enet --method prune_unstructured --budget quick \\
        --sparsities 0.5,0.75,0.9 --layers 'net.stage2.*' --threads 1 [--set budget.epochs=8]
"""

from __future__ import annotations

import argparse
import copy
import csv
import fnmatch
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Subset

from bench.atomic import atomic_write
from bench.budgets import Budget, get_budget
from bench.context import RunContext
from bench.evaluate import evaluate
from bench.layout import ProtectedResultsError, guard_write
from bench.method import METHODS
from bench.options import DEFAULT_RESULTS, UsageError, parse_sets
from bench.registry import UnknownNameError
from bench.spec import RunSpec
from bench.train import make_loader
from bench.validate import results_problem

METHOD_CHOICES = ("prune_unstructured", "prune_structured")
COLUMNS = ["model", "method", "budget", "layer", "weights", "sparsity", "achieved",
           "miou", "delta_miou", "baseline_miou", "eval_images", "error"]


def _baseline_ctx(model_name: str, budget: Budget, device: torch.device,
                  results: Path) -> RunContext:
    none = METHODS.get("none")
    spec = RunSpec(model=model_name, method="none", label="none",
                   stages=[{"method": "none", "version": none.version, "config": {}}],
                   dataset="synthetic", budget=budget, seed=0)
    return RunContext(spec, device=device, results=results)


def _evaluator(ctx: RunContext, max_images: int | None):
    """(mIoU of a model on the sweep's validation images, how many images that is)."""
    ds = ctx.dataset("val")
    if max_images is not None:
        ds = Subset(ds, range(min(max_images, len(ds))))
    loader = make_loader(ds, batch_size=ctx.budget.batch_size, shuffle=False, seed=0)

    def miou(model: nn.Module) -> float:
        model.eval()
        return evaluate(model, loader, ctx.num_classes, ctx.ignore_index, ctx.device)["miou"]

    return miou, len(ds)


def _selected(names: Sequence[str], patterns: Sequence[str] | None) -> list[str]:
    if not patterns:
        return list(names)
    out = [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]
    if not out:
        shown = ", ".join(list(names)[:10])
        raise UnknownNameError(f"--layers {','.join(patterns)} matches no prunable layer; "
                               f"layers include: {shown}")
    return out


def one_weight_at_a_time(model: nn.Module, names: Sequence[str], levels: Sequence,
                         perturb, score) -> Iterator[tuple[str, object, float]]:
    """(layer, level, score) for every layer and level: `perturb(layer_module, level)`
    changes that one layer's weight in place, `score(model)` measures the model, and the
    weight is restored before the next. The loop behind the pruning sensitivity here and
    the per-layer bit-width sensitivity of mixed-precision quantization
    (methods/quant/mixed.py)."""
    for name in names:
        w = model.get_submodule(name).weight
        saved = w.detach().clone()
        try:
            for level in levels:
                with torch.no_grad():
                    perturb(model.get_submodule(name), level)
                yield name, level, score(model)
                with torch.no_grad():
                    w.copy_(saved)
        finally:
            with torch.no_grad():
                w.copy_(saved)


@torch.no_grad()
def logit_error_table(model: nn.Module, names: Sequence[str], levels: Sequence, perturb,
                      images: torch.Tensor, batch_size: int) -> dict[str, dict]:
    """layer -> level -> relative squared error of the logits, ||f_l(x) - f(x)||² /
    ||f(x)||² over `images`, with only that layer perturbed at that level (`perturb` as in
    `one_weight_at_a_time`). The table mixed precision (bits per layer) and
    sensitivity-allocated pruning (a rate per layer) choose from."""
    model.eval()
    device = next(model.parameters()).device
    batches = [images[i : i + batch_size].to(device) for i in range(0, len(images), batch_size)]
    ref = [model(x) for x in batches]
    norm = sum(float((r.double() ** 2).sum()) for r in ref) or 1.0

    def score(m: nn.Module) -> float:
        return sum(float(((m(x) - r).double() ** 2).sum()) for x, r in zip(batches, ref)) / norm

    out: dict[str, dict] = {n: {} for n in names}
    for name, level, err in one_weight_at_a_time(model, names, levels, perturb, score):
        out[name][level] = err
    return out


def _unstructured_rows(model: nn.Module, sparsities, patterns, miou) -> Iterator[tuple]:
    """(layer, weights, sparsity, achieved, miou, error) pruning one layer's weights."""
    from methods.pruning.masks import magnitude_masks, weight_layers

    layers = weight_layers(model)
    achieved = {}

    def prune(layer: nn.Module, s: float) -> None:
        w = layer.weight
        w.mul_(next(iter(magnitude_masks({"w": w}, s, "layer").values())).to(w.device))
        achieved[id(layer), s] = 1.0 - float(torch.count_nonzero(w)) / w.numel()

    for name, s, m in one_weight_at_a_time(model, _selected(list(layers), patterns),
                                           sparsities, prune, miou):
        layer = layers[name]
        yield name, layer.weight.numel(), s, achieved[id(layer), s], m, ""


def _structured_rows(model: nn.Module, sparsities, patterns, miou, ctx) -> Iterator[tuple]:
    """(group root, weights, ratio, achieved, miou, error) removing the lowest-L1
    channels of one torch-pruning group on a copy of the model."""
    import torch_pruning as tp

    from methods.pruning.channels import ROOT_TYPES, classifier_layers, no_inplace

    example = torch.zeros(*ctx.input_shape, device=ctx.device)
    with no_inplace(model):
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    names = {m: n for n, m in model.named_modules()}
    roots = [names[g[0][0].target.module] for g in graph.get_all_groups(
        ignored_layers=classifier_layers(model, ctx.num_classes), root_module_types=ROOT_TYPES)]
    importance = tp.importance.MagnitudeImportance(p=1)
    for root in _selected(roots, patterns):
        weights = model.get_submodule(root).weight.numel()
        for s in sparsities:
            m = copy.deepcopy(model)
            with no_inplace(m):
                g_graph = tp.DependencyGraph().build_dependency(m, example_inputs=example)
            layer = m.get_submodule(root)
            fn = g_graph.get_pruner_of_module(layer).prune_out_channels
            n = g_graph.get_out_channels(layer)
            full = g_graph.get_pruning_group(layer, fn, list(range(n)))
            k = min(int(round(s * n)), n - 1)
            try:
                if k:
                    drop = torch.argsort(importance(full))[:k].tolist()
                    g_graph.get_pruning_group(layer, fn, drop).prune()
                yield root, weights, s, k / n, miou(m), ""
            except Exception as e:  # noqa: BLE001 - a group torch-pruning cannot handle
                yield root, weights, s, k / n, float("nan"), f"{type(e).__name__}: {e}"[:200]


def run_sensitivity(model_name: str, method_name: str, results: Path, budget: Budget | str,
                    device: torch.device | str, sparsities: Sequence[float],
                    layers: Sequence[str] | None = None,
                    max_images: int | None = None) -> Path:
    """Prune one layer (group) at a time at each sparsity, evaluate on the validation
    split without fine-tuning, write CSV + PNG under `results/sensitivity/`; returns the
    CSV path. `layers`: fnmatch patterns restricting the layers; `max_images`: evaluate
    on the first N validation images only (the baseline row uses the same images)."""
    if method_name not in METHOD_CHOICES:
        raise UnknownNameError(f"sensitivity supports --method {' or '.join(METHOD_CHOICES)}, "
                               f"not {method_name!r}")
    sparsities = [float(s) for s in sparsities]
    bad = [s for s in sparsities if not 0.0 <= s < 1.0]
    if bad or not sparsities:
        raise ValueError(f"sparsities must be numbers in [0, 1), got {sparsities}")
    budget = get_budget(budget) if isinstance(budget, str) else budget
    device = torch.device(device)
    results = Path(results)
    ctx = _baseline_ctx(model_name, budget, device, results)
    model, _ = ctx.baseline()
    model.eval()
    miou, n_images = _evaluator(ctx, max_images)
    base = miou(model)
    if method_name == "prune_unstructured":
        rows = _unstructured_rows(model, sparsities, layers, miou)
    else:
        rows = _structured_rows(model, sparsities, layers, miou, ctx)
    out_dir = results / "sensitivity"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{model_name}-{method_name}-{budget.name}.csv"
    table = []
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for layer, n, s, achieved, m, err in rows:
            row = [model_name, method_name, budget.name, layer, n, s, round(achieved, 6),
                   m, m - base, base, n_images, err]
            w.writerow(row)
            fh.flush()
            table.append(dict(zip(COLUMNS, row)))
    plot_sensitivity(table, path.with_suffix(".png"),
                     title=f"{model_name}: {method_name}, one layer at a time, no fine-tuning "
                           f"(baseline mIoU {100 * base:.1f}% on {n_images} validation "
                           f"images)")
    return path


def plot_sensitivity(rows: list[dict], path: Path, title: str = "") -> Path:
    """Heatmap of ΔmIoU (percentage points), layers (with their weight counts) down,
    sparsity across."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    layers = list(dict.fromkeys(r["layer"] for r in rows))
    levels = sorted({r["sparsity"] for r in rows})
    grid = np.full((len(layers), len(levels)), np.nan)
    for r in rows:
        grid[layers.index(r["layer"]), levels.index(r["sparsity"])] = 100 * r["delta_miou"]
    fig, ax = plt.subplots(figsize=(2.2 + 0.9 * len(levels), 1.6 + 0.22 * len(layers)))
    lim = max(1e-6, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0)
    im = ax.imshow(grid, aspect="auto", cmap="RdBu", vmin=-lim, vmax=lim)
    ax.set_xticks(range(len(levels)), [f"{s:g}" for s in levels])
    weights = {r["layer"]: int(r["weights"]) for r in rows}
    ax.set_yticks(range(len(layers)), [f"{n} ({weights[n]:,})" for n in layers], fontsize=7)
    ax.set_xlabel("sparsity of the one pruned layer")
    for i in range(len(layers)):
        for j in range(len(levels)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:+.1f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax, label="ΔmIoU (points)")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format=Path(path).suffix[1:] or "png", dpi=110))
    plt.close(fig)
    return path


def _budget_overrides(items: list[str]) -> dict:
    try:
        sets = parse_sets(items)
    except UsageError as e:
        raise ValueError(str(e)) from None
    bad = [k for k in sets if not k.startswith("budget.")]
    if bad:
        raise ValueError(f"--set {', '.join(bad)}: sensitivity takes budget.* overrides only")
    return {k.split(".", 1)[1]: v for k, v in sets.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="segbench sensitivity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--method", default="prune_unstructured", help=" | ".join(METHOD_CHOICES))
    p.add_argument("--budget", default="quick")
    p.add_argument("--results", default=str(DEFAULT_RESULTS))
    p.add_argument("--update-reference", action="store_true",
                   help="allow writing into results/reference/ (maintainers)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--sparsities", default="0.25,0.5,0.75,0.9")
    p.add_argument("--layers", default="", help="comma list of fnmatch patterns")
    p.add_argument("--max-images", type=int, default=None,
                   help="evaluate on the first N validation images only")
    p.add_argument("--set", action="append", default=[], metavar="budget.FIELD=VALUE",
                   help="budget override, as for `bench run` (the baseline's cache key)")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `python -m bench sensitivity -- --model ...` passes it on
        argv = argv[1:]
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        problem = results_problem(Path(args.results))
        if problem:
            raise UsageError(problem)
        guard_write(Path(args.results), args.update_reference)
        sparsities = [float(s) for s in args.sparsities.split(",") if s.strip()]
        budget = get_budget(args.budget, _budget_overrides(args.set))
        path = run_sensitivity(args.model, args.method, Path(args.results), budget,
                               args.device, sparsities,
                               [x for x in args.layers.split(",") if x.strip()] or None,
                               max_images=args.max_images)
    except (UnknownNameError, ValueError, ProtectedResultsError, UsageError) as e:
        print(f"segbench: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} and {path.with_suffix('.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
