"""Mixed precision: each layer's weight bit-width chosen from its measured sensitivity
under a size budget (`weight_bits=auto`), as HAWQ-v3 (Yao et al. 2021, an integer program
over per-layer bit-widths) and AIMET's AMP do.

1. **Sensitivity.** One layer at a time (bench/sensitivity.py's loop), its weights are
   replaced by their brevitas-quantized values at 2, 4 and 8 bits (the very quantizer the
   run then uses) and the model's logits on the first calibration images are compared
   with the float model's: the relative squared error ||f_q(x) - f(x)||² / ||f(x)||².
   Activations stay float, so the table isolates what each layer's weight width costs.
2. **Allocation.** The total sensitivity (summed over layers, HAWQ's additive model) is
   minimised subject to the packed weight codes fitting the budget: a multiple-choice
   knapsack, solved exactly by dynamic programming over the bytes (each layer's size
   rounded up to the grid, so the budget always holds; methods/allocation).
3. The plan's layers take the chosen widths; the artifact packs each layer's codes at its
   own width (`int_packed`), so the bytes are the file's, and the record keeps the table
   and the choice (`bench.facts.MixedPrecision`).

Layers pinned by `first_last_bits` keep that width and are not chosen.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bench.method import NotApplicable
from bench.sensitivity import logit_error_table
from methods.allocation import GRID_STEPS, choose_per_layer
from methods.quant.modules import LayerSpec
from methods.quant.plan import QuantPlan

AUTO_BITS = (2, 4, 8)
SENSITIVITY_IMAGES = 8  # calibration images the per-layer table is measured on


def code_bytes(numel: int, bits: int) -> int:
    """Bytes of `numel` codes packed at `bits` (methods/codecs/int_pack.py)."""
    return (numel * bits + 7) // 8


def fixed_bytes(model: nn.Module, plan: QuantPlan) -> int:
    """Artifact payload that does not depend on the weight widths: every float tensor
    other than the quantized weights, the weight scales and the activation scales (the
    header is not counted)."""
    quantized = {f"{n}.weight" for n in plan.layers}
    total = sum(t.numel() * t.element_size() for k, t in model.state_dict().items()
                if k not in quantized)
    for name, spec in plan.layers.items():
        w = model.get_submodule(name).weight
        axis = 1 if isinstance(model.get_submodule(name), nn.ConvTranspose2d) else 0
        total += 4 * (w.shape[axis] if spec.per_channel else 1)
        total += 4 * ((spec.in_q is not None) + (spec.out_q is not None))
    return total + 4 * (len(plan.acts) + len(plan.posts))


def sensitivity(model: nn.Module, plan: QuantPlan, layers: list[str], images: torch.Tensor,
                batch_size: int) -> dict[str, dict[int, float]]:
    """layer -> bits -> relative squared error of the logits with only that layer's
    weights quantized at `bits`."""
    _name = {id(model.get_submodule(n)): n for n in layers}

    def quantize(layer: nn.Module, bits: int) -> None:
        per_channel = plan.layers[_name[id(layer)]].per_channel
        layer.weight.copy_(_quantized_weight(layer, bits, per_channel))

    return logit_error_table(model, layers, AUTO_BITS, quantize, images, batch_size)


def _quantized_weight(layer: nn.Module, bits: int, per_channel: bool) -> torch.Tensor:
    """The layer's weights through the run's brevitas weight quantizer at `bits`."""
    from methods.quant.brevitas_layers import brevitas_layer

    q = brevitas_layer(layer, LayerSpec(bits, per_channel), None)
    return q.quant_weight().value.detach()


def allocate(sens: dict[str, dict[int, float]], numel: dict[str, int],
             budget: int) -> dict[str, int]:
    """Bit-width per layer minimising the summed sensitivity with the packed codes within
    `budget` bytes; NotApplicable when even 2 bits everywhere do not fit."""
    names, budget = list(sens), int(budget)
    least = sum(code_bytes(numel[n], min(AUTO_BITS)) for n in names)
    if least > budget:
        raise NotApplicable(f"the size budget leaves {budget} bytes for the chosen layers' "
                            f"weights; at {min(AUTO_BITS)} bits everywhere they need {least}")
    most = sum(code_bytes(numel[n], max(AUTO_BITS)) for n in names)
    if most <= budget:
        return {n: max(AUTO_BITS) for n in names}
    bits = choose_per_layer(
        {n: {b: sens[n][b] for b in AUTO_BITS} for n in names},
        {n: {b: code_bytes(numel[n], b) for b in AUTO_BITS} for n in names}, budget)
    if bits is None:  # the grid's rounding left no room (tiny budgets)
        step = max(1, math.ceil(budget / GRID_STEPS))
        raise NotApplicable(f"no bit-widths in {AUTO_BITS} fit {budget} bytes on a "
                            f"{step}-byte grid")
    return bits


def with_bits(plan: QuantPlan, bits: dict[str, int]) -> None:
    """Set the chosen layers' weight widths in the plan (in place)."""
    for name, b in bits.items():
        s = plan.layers[name]
        plan.layers[name] = LayerSpec(b, s.per_channel, s.in_q, s.out_q)
