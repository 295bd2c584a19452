"""Brevitas does the quantization proper: fake-quantized layers with straight-through
gradients and learned scales for QAT, runtime-statistics calibration for PTQ.

`to_brevitas` swaps the plan's layers for `brevitas.nn` ones (QuantConv2d,
QuantConvTranspose2d, QuantLinear with their input/output quantizers; QuantReLU for the
ReLUs that carry a quantizer; a QuantIdentity after each PReLU, LayerNorm, GELU and
Softmax whose output the plan quantizes), `calibrate` initialises every activation scale from
calibration images with `brevitas.graph.calibrate.calibration_mode`, and `freeze` reads the
integer weights and scales back out into the frozen layers of methods/quant/modules.py.

Why LayerNorm, GELU and Softmax are float ops with a QuantIdentity on their output, not
brevitas quantized layers: brevitas 0.13 has no quantized LayerNorm or GELU module
(`brevitas.nn` offers QuantReLU/Sigmoid/Tanh/HardTanh/HardSwish and, for BatchNorm only,
QuantScaleBias), and no runtime we ship to has an integer LayerNorm, GELU or Softmax
kernel either (onnxruntime runs them in float between a DequantizeLinear and a
QuantizeLinear). What makes the transformer integer is that every matmul and Linear
reads quantized codes: quantizing each such output once, where it is produced, gives
every consumer (Q, K/V and the spatial-reduction conv all read one LayerNorm) the same
codes and a learned scale. brevitas's QuantScaledDotProductAttention would quantize the
attention operands too, but it replaces the whole attention (its own projections and
layout); our plan instead finds the operands already on a quantizer's grid (the Q and
KV Linears' output quantizers through reshapes, the Softmax's unsigned quantizer).

Quantizer choice: 8-bit weights use brevitas's max-abs scale (recomputed from the weights);
narrower weights use its MSE-initialised learned scale, since max-abs wastes most of a
4- or 2-bit grid on outliers. Activations use learned scales initialised from a percentile
of the calibration activations: the 99.999th at 8 bits, the 99.9th below (brevitas's MSE
initialisation of activations costs ~1 s per image on ENet, too slow for calibration sets
of hundreds of images on a CPU; QAT learns the scale from there anyway).
"""

from __future__ import annotations

import torch
from brevitas import nn as qnn
from brevitas.graph.calibrate import calibration_mode
from brevitas.inject.enum import StatsOp
from brevitas.quant import (
    Int8ActPerTensorFloat,
    Int8WeightPerChannelFloat,
    Int8WeightPerChannelFloatMSE,
    Int8WeightPerTensorFloat,
    Int8WeightPerTensorFloatMSE,
    Uint8ActPerTensorFloat,
)
from torch import nn

from methods.quant.modules import (
    ActQuant,
    ActSpec,
    LayerSpec,
    PostQuant,
    QuantMatMul,
    frozen_layer,
    qrange,
)
from methods.quant.plan import QuantPlan

SUB8_ACT_PERCENTILE = 99.9  # calibration percentile for activations below 8 bits


def weight_quantizer(bits: int, per_channel: bool, stats: str = "percentile"):
    """`stats="minmax"`: the max-abs scale at every width (the textbook baseline the PTQ
    algorithms are compared with); otherwise max-abs at 8 bits, MSE below."""
    if bits >= 8 or stats == "minmax":
        base = Int8WeightPerChannelFloat if per_channel else Int8WeightPerTensorFloat
    else:
        base = Int8WeightPerChannelFloatMSE if per_channel else Int8WeightPerTensorFloatMSE
    return base.let(bit_width=bits)


def act_quantizer(spec: ActSpec | None, stats: str = "percentile"):
    """`stats="minmax"`: scale from each calibration batch's maximum magnitude (brevitas's
    running average of it over the batches); otherwise from a percentile."""
    if spec is None:
        return None
    base = Int8ActPerTensorFloat if spec.signed else Uint8ActPerTensorFloat
    if stats == "minmax":
        return base.let(bit_width=spec.bits, scaling_stats_op=StatsOp.MAX)
    # a narrower grid is better spent on the bulk of the distribution than on its tail
    percentile = 99.999 if spec.bits >= 8 else SUB8_ACT_PERCENTILE
    return base.let(bit_width=spec.bits, high_percentile_q=percentile)


def brevitas_layer(m: nn.Module, spec: LayerSpec, in_q: ActSpec | None,
                   stats: str = "percentile") -> nn.Module:
    common = dict(weight_quant=weight_quantizer(spec.w_bits, spec.per_channel, stats),
                  input_quant=act_quantizer(in_q, stats),
                  output_quant=act_quantizer(spec.out_q, stats),
                  bias=m.bias is not None, return_quant_tensor=False)
    if type(m) is nn.Conv2d:
        q = qnn.QuantConv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride,
                            padding=m.padding, dilation=m.dilation, groups=m.groups, **common)
    elif type(m) is nn.ConvTranspose2d:
        q = qnn.QuantConvTranspose2d(m.in_channels, m.out_channels, m.kernel_size,
                                     stride=m.stride, padding=m.padding,
                                     output_padding=m.output_padding, dilation=m.dilation,
                                     groups=m.groups, **common)
    elif type(m) is nn.Linear:
        q = qnn.QuantLinear(m.in_features, m.out_features, **common)
    else:
        raise TypeError(f"no brevitas counterpart for {type(m).__name__}")
    with torch.no_grad():
        q.weight.copy_(m.weight)
        if m.bias is not None:
            q.bias.copy_(m.bias)
    return q.to(m.weight.device)


def to_brevitas(model: nn.Module, plan: QuantPlan, stats: str = "percentile") -> nn.Module:
    """Replace the plan's layers and ReLUs by brevitas quantized modules (in place). A tied
    input quantizer is left out here: its input already lies on the tied grid. `stats`:
    how scales are initialised ("percentile", today's default, or "minmax")."""
    for name, spec in plan.layers.items():
        in_q = None if name in plan.ties else spec.in_q
        model.set_submodule(name, brevitas_layer(model.get_submodule(name), spec, in_q, stats))
    for name, spec in plan.acts.items():
        model.set_submodule(name, qnn.QuantReLU(act_quant=act_quantizer(spec, stats),
                                                return_quant_tensor=False))
    for name, spec in plan.posts.items():
        model.set_submodule(name, PostQuant(model.get_submodule(name),
                                            _quant_identity(spec, stats, model)))
    for name, spec in plan.matmuls.items():  # tied operands already lie on their grid
        q = [None if tie else _quant_identity(s, stats, model)
             for s, tie in ((spec.a_q, spec.a_tie), (spec.b_q, spec.b_tie))]
        model.set_submodule(name, QuantMatMul(model.get_submodule(name), *q))
    return model


def _quant_identity(spec: ActSpec | None, stats: str, model: nn.Module) -> nn.Module | None:
    if spec is None:
        return None
    return qnn.QuantIdentity(act_quant=act_quantizer(spec, stats),
                             return_quant_tensor=False).to(_device(model))


@torch.no_grad()
def calibrate(model: nn.Module, images: torch.Tensor, batch_size: int,
              device: torch.device) -> None:
    """Initialise activation scales from `images` (weights are not changed)."""
    model.eval()
    with calibration_mode(model):
        for i in range(0, len(images), batch_size):
            model(images[i : i + batch_size].to(device))
    model.eval()


def _act_scale(proxy) -> torch.Tensor:
    """Scale of a per-tensor brevitas activation quantizer (zero point must be 0)."""
    p = next(iter(proxy.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    qt = proxy(torch.zeros(1, 1, 1, 1, device=device))
    if float(qt.zero_point.abs().max()) != 0.0:
        raise ValueError("activation quantizer with a nonzero zero point")
    return qt.scale.detach().reshape(()).float().cpu()


def _weight_codes(layer: nn.Module, spec: LayerSpec) -> tuple[torch.Tensor, torch.Tensor]:
    qw = layer.quant_weight()
    if float(qw.zero_point.abs().max()) != 0.0:
        raise ValueError("weight quantizer with a nonzero zero point")
    codes = qw.int().detach().cpu()
    lo, hi = qrange(spec.w_bits, signed=True)
    if int(codes.min()) < lo or int(codes.max()) > hi:
        raise ValueError(f"weight codes outside the {spec.w_bits}-bit range")
    scale = qw.scale.detach().float().cpu()
    scale = scale.reshape(-1) if spec.per_channel else scale.reshape(())
    return codes.to(torch.int8), scale


@torch.no_grad()
def freeze(model: nn.Module, plan: QuantPlan) -> nn.Module:
    """Replace brevitas modules by frozen integer layers holding the same numbers."""
    model.eval()
    scales: dict[str, torch.Tensor] = {}
    for name in plan.acts:
        scales[f"act:{name}"] = _act_scale(model.get_submodule(name).act_quant)
    for name in plan.posts:
        scales[f"post:{name}"] = _act_scale(model.get_submodule(name).quant.act_quant)
    for name, spec in plan.layers.items():
        if spec.out_q is not None:
            scales[f"out:{name}"] = _act_scale(model.get_submodule(name).output_quant)
    for name, spec in plan.layers.items():
        layer = model.get_submodule(name)
        frozen = frozen_layer(layer, spec)
        codes, w_scale = _weight_codes(layer, spec)
        frozen.weight_int.copy_(codes)
        frozen.weight_scale.copy_(w_scale)
        if spec.in_q is not None:
            tie = plan.ties.get(name)
            frozen.in_q.scale.copy_(scales[tie] if tie else _act_scale(layer.input_quant))
        if layer.bias is not None:
            bias = layer.bias.detach().float().cpu()
            in_scale = frozen.in_q.scale if spec.in_q is not None else \
                scales.get(plan.feeds.get(name, ""))
            if in_scale is not None and frozen.export_int_weight:
                bias = _on_bias_grid(bias, in_scale * w_scale)
            frozen.bias.copy_(bias)
        if spec.out_q is not None:
            frozen.out_q.scale.copy_(scales[f"out:{name}"])
        model.set_submodule(name, frozen.to(layer.weight.device))
    for name, spec in plan.acts.items():
        act = ActQuant(spec)
        act.scale.copy_(scales[f"act:{name}"])
        model.set_submodule(name, act.to(_device(model)))
    for name, spec in plan.posts.items():
        act = ActQuant(spec)
        act.scale.copy_(scales[f"post:{name}"])
        model.get_submodule(name).quant = act.to(_device(model))
    for name, spec in plan.matmuls.items():
        mm = model.get_submodule(name)
        for attr, q, tie in (("a_q", spec.a_q, spec.a_tie), ("b_q", spec.b_q, spec.b_tie)):
            if q is None:
                continue
            act = ActQuant(q)  # a tied operand is requantized at its source's scale: exact
            act.scale.copy_(scales[tie] if tie else _act_scale(getattr(mm, attr).act_quant))
            setattr(mm, attr, act.to(_device(model)))
    return model


def _on_bias_grid(bias: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """The bias an integer kernel adds: int32 codes of step input_scale * weight_scale
    (what onnxruntime makes of a float bias when it fuses QLinearConv), so PyTorch and
    onnxruntime add the very same number."""
    return torch.round(bias / step) * step


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")
