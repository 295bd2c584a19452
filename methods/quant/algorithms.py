"""Post-training quantization algorithms, each brevitas's own implementation, run on the
eager zoo models (which torch.fx cannot trace) over the calibration images.

    equalize         cross-layer equalization (Nagel et al. 2019, DFQ; brevitas
                     graph/equalize.py): per-channel scales moved between a conv and the
                     convs it feeds through a ReLU / max-pool, so the per-tensor activation
                     and per-channel weight ranges even out. brevitas finds such regions on
                     an fx graph; here they come from our recorded dataflow (trace.py), and
                     brevitas's `_equalize` rescales the weights.
    adaround         learned rounding (Nagel et al. 2020): every weight rounds up or down
                     as a learned hard-sigmoid gate decides (brevitas's learned-round weight
                     quantizer and round regulariser), trained layer by layer to reproduce
                     the float layer's output on the calibration images.
    gptq / gpfq      brevitas.graph.gptq / gpfq: weights quantized one input column at a
                     time, the error of each pushed onto the columns not yet quantized,
                     weighted by the inputs' second moments (GPTQ, Frantar et al. 2023) or
                     by float-vs-quantized input correlations (GPFQ, Lybrand & Saab 2021).
                     brevitas skips transposed convolutions (its issue 1479).
    bias correction  brevitas.graph.calibrate.bias_correction_mode: each layer's bias absorbs
                     the mean shift quantization puts on its output (DFQ section 4.2).

`minmax` and `percentile` are activation-calibration statistics (weights_quantizer /
act_quantizer in brevitas_layers.py); they need nothing here.
"""

from __future__ import annotations

import contextlib
import re
import warnings

import torch
from torch import nn

from bench.runtimes import quiet_import
from methods.quant.plan import QuantPlan
from methods.quant.trace import Trace

# brevitas's own notices, printed by every run that reaches its graph algorithms: its fx
# module's deprecation, an optional kernel package it falls back from, and GPTQ/GPFQ leaving
# transposed convolutions to round-to-nearest (docs/quantization.md says so)
BREVITAS_NOTICES = ("brevitas.fx is deprecated", "fast_hadamard_transform package not found",
                    "ConvTranspose is temporarily unsupported for GPxQ")


@contextlib.contextmanager
def brevitas_quietly():
    """Run brevitas's graph algorithms without its known notices on stderr."""
    with warnings.catch_warnings():
        for notice in BREVITAS_NOTICES:
            warnings.filterwarnings("ignore", message=re.escape(notice))
        yield


# the first import of brevitas's graph package prints two of its notices, and brevitas's
# own first import a torch one (bench.runtimes.IMPORT_NOTICES)
with brevitas_quietly(), quiet_import():
    import brevitas.graph.equalize  # noqa: E402, F401

ALGORITHMS = ("minmax", "percentile", "adaround", "gptq", "gpfq")
ROUNDING = ("adaround", "gptq", "gpfq")  # the ones that change the weights' rounding

# ops a per-channel positive scale passes through unchanged (ReLU(s x) = s ReLU(x), and
# max-pooling picks the same element): brevitas's scale-invariant layers, as we trace them
_INVARIANT_MODULES = (nn.ReLU, nn.LeakyReLU, nn.MaxPool2d)
_INVARIANT_FUNCS = {"relu", "relu_", "max_pool2d", "max_pool2d_with_indices", "leaky_relu"}
# AdaRound on a CPU: each layer learns from the first ADAROUND_IMAGES calibration images
# (their inputs and float outputs are held in memory, one layer at a time), ADAROUND_BATCH
# images a step
ADAROUND_IMAGES = 32
ADAROUND_BATCH = 2
EQUALIZE_ITERATIONS = 10  # brevitas EqualizeGraph's defaults
EQUALIZE_THRESHOLD = 0.05


def _regions(model: nn.Module, trace: Trace, plan: QuantPlan) -> list[tuple[str, list[str]]]:
    """(source layer, sink layers) pairs: the source's output (after its folded BatchNorm)
    reaches only the sinks' inputs, through scale-invariant ops with one consumer each."""
    from methods.quant.plan import COMPUTE

    folded = dict(plan.folds)
    outputs = set(trace.output_values)
    calls = {c.name: c for c in trace.calls_of(COMPUTE)}
    out = []
    for name, c in calls.items():
        v = c.outputs[0]
        if name in folded:
            (bn,) = trace.consumers(v)
            v = bn.outputs[0]
        while v not in outputs:
            cons = trace.consumers(v)
            if len(cons) != 1:
                break
            nxt = cons[0]
            invariant = (nxt.module is not None and isinstance(nxt.module, _INVARIANT_MODULES)) \
                or (nxt.module is None and nxt.name in _INVARIANT_FUNCS)
            if not invariant or not nxt.outputs or nxt.inputs[:1] != [v]:
                break
            v = nxt.outputs[0]  # max_pool with indices: the values, not the indices
        cons = trace.consumers(v)
        if v in outputs or not cons:
            continue
        if all(s.module is not None and s.name in calls and s.inputs[:1] == [v]
               and s.inputs.count(v) == 1 for s in cons):
            out.append((name, [s.name for s in cons]))
    return out


@torch.no_grad()
def equalize(model: nn.Module, trace: Trace, plan: QuantPlan) -> int:
    """Cross-layer equalization of the folded float model, in place; returns how many
    regions brevitas equalized (regions it declines, e.g. shape mismatches, included)."""
    from brevitas.graph.equalize import EqualizationIndexes, Region, _equalize

    regions = []
    for src, sinks in _regions(model, trace, plan):
        s = model.get_submodule(src)
        n = s.out_channels if isinstance(s, (nn.Conv2d, nn.ConvTranspose2d)) else s.out_features
        sink_mods = {k: model.get_submodule(k) for k in sinks}
        if any(_in_channels(m) != n for m in sink_mods.values()):
            continue
        regions.append(Region.from_dicts(
            srcs={src: EqualizationIndexes(0, n, 0)},
            sinks={k: EqualizationIndexes(0, n, 0) for k in sinks},
            name_to_module={src: s, **sink_mods}))
    if regions:
        _equalize(model, regions, EQUALIZE_ITERATIONS, EQUALIZE_THRESHOLD, merge_bias=True,
                  bias_shrinkage="vaiq", scale_computation_type="maxabs")
    return len(regions)


def _in_channels(m: nn.Module) -> int:
    return m.in_channels if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) else m.in_features


def _batches(images: torch.Tensor, batch_size: int, device: torch.device):
    for i in range(0, len(images), batch_size):
        yield images[i : i + batch_size].to(device)


@torch.no_grad()
def init_weight_scales(model: nn.Module) -> None:
    """Fix every learned weight scale at its initial value (brevitas computes an MSE
    scale on a layer's first quantized weight access; calibration runs with weight
    quantization off), so the algorithms below round against the scales the run ships."""
    from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer as QuantWBIOL

    for m in model.modules():
        if isinstance(m, QuantWBIOL):
            m.quant_weight()


@torch.no_grad()
def gpxq(model: nn.Module, algorithm: str, images: torch.Tensor, batch_size: int,
         device: torch.device) -> None:
    """GPTQ or GPFQ over every quantized layer, in forward order (brevitas's loop: one
    partial forward pass over the calibration images per layer)."""
    from brevitas.graph.gpfq import gpfq_mode
    from brevitas.graph.gptq import gptq_mode

    mode = gptq_mode if algorithm == "gptq" else gpfq_mode
    model.eval()
    init_weight_scales(model)
    with mode(model, use_quant_activations=True, create_weight_orig=algorithm == "gpfq") as algo:
        for _ in range(algo.num_layers):
            for x in _batches(images, batch_size, device):
                algo.model(x)
            algo.update()
    for m in model.modules():  # GPFQ's float copy of the weights is not part of the model
        if "weight_orig" in m._buffers:
            del m._buffers["weight_orig"]


@torch.no_grad()
def bias_correction(model: nn.Module, images: torch.Tensor, batch_size: int,
                    device: torch.device) -> None:
    """brevitas's bias correction; layers without a bias are left alone (a new bias would
    change the structure the artifact rebuilds)."""
    from brevitas.graph.calibrate import bias_correction_mode

    model.eval()
    with bias_correction_mode(model, skip_if_no_bias=True):
        for x in _batches(images, batch_size, device):
            model(x)


class _Stop(Exception):
    pass


def _capture(model: nn.Module, layer: nn.Module, x: torch.Tensor, quant: bool
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, output) of `layer` on `x`, the model run with quantization on or off up
    to that layer only."""
    from brevitas.graph.calibrate import quantization_status_manager

    got = {}

    def hook(mod, args, out):
        got["in"], got["out"] = args[0].detach(), out.detach()
        raise _Stop

    h = layer.register_forward_hook(hook)
    try:
        if quant:
            model(x)
        else:
            with quantization_status_manager(model, disable_act_quant=True,
                                             disable_weight_quant=True,
                                             disable_bias_quant=True, is_training=False):
                model(x)
    except _Stop:
        pass
    finally:
        h.remove()
    return got["in"], got["out"]


def adaround(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device,
             iters: int, seed: int = 0) -> None:
    """AdaRound, layer by layer in forward order: each layer's inputs come from the model
    quantized so far (earlier layers already rounded), its target is the float model's
    output of that layer; the rounding gates train `iters` Adam steps (lr 1e-3, as
    brevitas's examples) on the MSE plus brevitas's annealed round regulariser (weight
    0.01, b 20 -> 2, 20 % warm-up), then are fixed to floor or ceil."""
    from brevitas.graph.calibrate import QuantizationStatusManager
    from brevitas.inject.enum import LearnedRoundImplType
    from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer as QuantWBIOL
    from brevitas_examples.common.learned_round.learned_round_method import (
        RoundRegularisationLoss,
        insert_learned_round_quantizers,
        return_learned_round_quantizers,
    )

    model.eval()
    with torch.no_grad():
        init_weight_scales(model)
        insert_learned_round_quantizers(model, LearnedRoundImplType.HARD_SIGMOID)
    order: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda mod, a: order.append(mod))
             for m in model.modules() if isinstance(m, QuantWBIOL)]
    with torch.no_grad():
        model(images[:1].to(device))
    for h in hooks:
        h.remove()
    gen = torch.Generator().manual_seed(seed)
    images = images[:ADAROUND_IMAGES]
    for layer in dict.fromkeys(order):  # forward order, each layer once
        (gate,) = return_learned_round_quantizers(layer)
        out_quant = layer.output_quant.is_quant_enabled
        with torch.no_grad():
            pairs = [(_capture(model, layer, x, True)[0], _capture(model, layer, x, False)[1])
                     for x in _batches(images, batch_size, device)]
        xs = torch.cat([p[0] for p in pairs])
        ys = torch.cat([p[1] for p in pairs])
        del pairs
        if out_quant:  # compare outputs before the output quantizer, as the float ones are
            QuantizationStatusManager.disable_act_quantization(layer.output_quant,
                                                               is_training=False)
        trainable = {p: p.requires_grad for p in layer.parameters()}
        for p in trainable:
            p.requires_grad_(p is gate.value)
        gate.train()
        reg = RoundRegularisationLoss(layer, max_count=iters)
        opt = torch.optim.Adam([gate.value], lr=1e-3)
        try:
            for _ in range(iters):
                idx = torch.randint(len(xs), (min(ADAROUND_BATCH, len(xs)),), generator=gen)
                pred = layer(xs[idx])
                loss = nn.functional.mse_loss(pred, ys[idx]) + reg(pred, ys[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        finally:
            gate.eval()
            for p, was in trainable.items():
                p.requires_grad_(was)
            if out_quant:
                QuantizationStatusManager.enable_act_quantization(layer.output_quant,
                                                                  is_training=False)
