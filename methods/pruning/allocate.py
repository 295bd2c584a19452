"""Per-layer sparsity from a measured sensitivity, under one overall target
(`prune_unstructured --set scope=sensitivity`).

Han et al. (2015) chose each layer's pruning threshold from its sensitivity curve (Fig. 6:
prune one layer, watch accuracy); Deep Compression reached its ratios with rates from ~90 %
in large, robust layers down to ~35 % in the first convolution. Here the curve is measured
and the rates chosen for the whole model at once:

1. **Sensitivity.** One layer at a time (bench/sensitivity.py's loop), the layer's
   smallest-magnitude weights are zeroed at each candidate rate and the logits on the first
   calibration images are compared with the unpruned model's: the relative squared error
   ||f_s(x) - f(x)||² / ||f(x)||² (the table mixed precision measures for bit widths).
2. **Allocation.** The summed error is minimised subject to the kept weights fitting
   (1 - sparsity) of the prunable weights: the multiple-choice knapsack of
   methods/allocation, so the overall target always holds and large insensitive layers
   take most of the pruning.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.sensitivity import logit_error_table
from methods.allocation import choose_per_layer
from methods.pruning.masks import magnitude_masks

# the rates a layer may take; the overall target is added to them
RATES = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
SENSITIVITY_IMAGES = 8  # calibration images the table is measured on


def rates_for(target: float) -> tuple[float, ...]:
    return tuple(sorted(set(RATES) | {round(target, 6)}))


def kept(numel: int, rate: float) -> int:
    """Weights a layer of `numel` keeps at `rate` (magnitude_masks drops round(rate * n))."""
    return numel - int(round(rate * numel))


def pruning_sensitivity(model: nn.Module, layers: list[str], images: torch.Tensor,
                        batch_size: int, rates: tuple[float, ...]
                        ) -> dict[str, dict[float, float]]:
    """layer -> rate -> relative squared error of the logits with only that layer's
    smallest-magnitude weights zeroed at `rate`."""
    def prune(layer: nn.Module, rate: float) -> None:
        w = layer.weight
        w.mul_(magnitude_masks({"w": w}, rate, "layer")["w"].to(w.dtype))

    return logit_error_table(model, layers, rates, prune, images, batch_size)


def allocate_sparsity(sens: dict[str, dict[float, float]], numel: dict[str, int],
                      sparsity: float) -> dict[str, float]:
    """The rate per layer minimising the summed sensitivity with at most
    (1 - sparsity) of all the layers' weights kept."""
    total = sum(numel.values())
    budget = total - int(round(sparsity * total))
    sizes = {n: {r: kept(numel[n], r) for r in sens[n]} for n in sens}
    chosen = choose_per_layer(sens, sizes, budget)
    if chosen is None:
        raise RuntimeError(f"no per-layer rates in {sorted(next(iter(sens.values())))} keep "
                           f"{budget} of {total} weights (target sparsity {sparsity})")
    return chosen
