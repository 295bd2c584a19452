"""Where a model's features are: a forward probe of its structure, the named layer sets
that feature distillation reads (`output`, `atrous`, `stages`, `all`, or module names),
forward hooks that capture those activations, and the attention map of attention transfer.

Used by the distillation plugins (`at`, `cwd`), by `cheapconv` (which part of a model is
its encoder) and by the attention figure (bench/plots/attention.py), which shows exactly
the activations a run compared.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.config import ConfigError
from bench.method import NotApplicable
from bench.registry import UnknownNameError

# -- probing a model's structure --------------------------------------------------------------


def first_tensor(x: Any) -> torch.Tensor | None:
    """A module's main output: the tensor itself, or the first tensor of a tuple/list."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)):
        return next((t for t in x if isinstance(t, torch.Tensor)), None)
    return None


@dataclass
class Probe:
    """One eval-mode forward pass on zeros: the order modules start in, and shapes."""

    order: list[str]  # module names by first call
    out_shape: dict[str, tuple[int, ...] | None]  # main output shape (None: not a tensor)
    in_shape: dict[str, tuple[int, ...] | None]

    def ran(self, name: str) -> bool:
        return name in self.out_shape

    def spatial(self, name: str) -> int | None:
        s = self.out_shape.get(name)
        return s[-2] * s[-1] if s is not None and len(s) == 4 else None


def probe(model: nn.Module, input_shape: Sequence[int]) -> Probe:
    order: list[str] = []
    out_shape: dict[str, tuple[int, ...] | None] = {}
    in_shape: dict[str, tuple[int, ...] | None] = {}

    def pre(name, module, args):
        if name not in in_shape:
            order.append(name)
            t = first_tensor(args)
            in_shape[name] = tuple(t.shape) if t is not None else None

    def post(name, module, args, output):
        t = first_tensor(output)
        out_shape[name] = tuple(t.shape) if t is not None else None

    handles = []
    for name, m in model.named_modules():
        if name:
            handles.append(m.register_forward_pre_hook(lambda mod, a, n=name: pre(n, mod, a)))
            handles.append(m.register_forward_hook(lambda mod, a, o, n=name: post(n, mod, a, o)))
    was_training = model.training
    device = next(itertools.chain(model.parameters(), [torch.empty(0)])).device
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(tuple(input_shape), device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return Probe(order, out_shape, in_shape)


# -- layer sets -------------------------------------------------------------------------------

LAYER_SETS = ("all", "atrous", "output", "stages")
_ENCODER_NAMES = ("encoder", "backbone")


@dataclass(frozen=True)
class TapPoint:
    """A captured activation: the output of module `module`, or its input (`where`)."""

    module: str
    where: str = "output"  # output | input

    def __str__(self) -> str:
        return self.module if self.where == "output" else f"{self.module}(input)"


def validate_layers(layers: Any, setting: str = "layers") -> None:
    """A layer set's name or a non-empty list of module names, else ConfigError."""
    ok = isinstance(layers, str) and layers in LAYER_SETS
    ok = ok or (isinstance(layers, list) and layers and all(isinstance(x, str) for x in layers))
    if not ok:
        raise ConfigError(setting, layers, f"one of {', '.join(LAYER_SETS)}, or a JSON list "
                          "of module names")


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def _is_dilated(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and max(m.dilation) > 1


def find_aspp(model: nn.Module) -> str | None:
    """The outermost module whose class name contains "ASPP" and that holds at least two
    dilated convolutions (DeepLab's pyramid; LR-ASPP, which has none, does not count)."""
    for name, m in model.named_modules():
        cls = type(m).__name__.lower()
        if "aspp" in cls and "lraspp" not in cls and sum(map(_is_dilated, m.modules())) >= 2:
            return name
    return None


def find_encoder(model: nn.Module) -> str | None:
    """The outermost module named `encoder` or `backbone`, if the model has one."""
    for name, _ in model.named_modules():
        if name.rsplit(".", 1)[-1] in _ENCODER_NAMES:
            return name
    return None


def _under(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def atrous_points(model: nn.Module, pr: Probe) -> list[TapPoint]:
    """Each atrous branch: for every dilated convolution (inside the ASPP when the model
    has one, else anywhere), the largest module that runs in forward and holds no other
    dilated convolution: ASPP's `ASPPConv` branches, ENet's dilated bottlenecks."""
    scope = find_aspp(model) or ""
    mods = dict(model.named_modules())
    dilated = [n for n, m in mods.items() if n and _under(n, scope) and _is_dilated(m)]
    points: list[str] = []
    for d in dilated:
        parts = d.split(".")
        for k in range(1, len(parts) + 1):
            cand = ".".join(parts[:k])
            if not _under(cand, scope) or cand == scope:
                continue
            if pr.ran(cand) and pr.spatial(cand) and sum(_under(x, cand) for x in dilated) == 1:
                points.append(cand)
                break
    return [TapPoint(n) for n in sorted(set(points), key=pr.order.index)]


def classifier_name(model: nn.Module, pr: Probe, num_classes: int) -> str:
    """The last convolution to run that maps features to `num_classes` channels."""
    found = None
    for name in pr.order:
        m = model.get_submodule(name)
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.out_channels == num_classes \
                and m.in_channels != num_classes:
            found = name
    if found is None:
        raise ValueError(f"no convolution of {type(model).__name__} maps features to the "
                         f"{num_classes} classes; cannot locate its decoder output")
    return found


def output_point(model: nn.Module, pr: Probe, num_classes: int) -> TapPoint:
    """The decoder's (ASPP's, for DeepLabV3) output: the input of the final classifier."""
    return TapPoint(classifier_name(model, pr, num_classes), "input")


def _units(model: nn.Module, pr: Probe) -> list[str]:
    """The model's building blocks in forward order: top-level children under single-child
    wrappers (PadCrop, OutOnly), with containers, encoders/backbones and modules that do
    not return a feature map opened one level; parameter-free modules dropped."""
    prefix, m = "", model
    while len(list(m.children())) == 1:
        cname, m = next(iter(m.named_children()))
        prefix = f"{prefix}.{cname}" if prefix else cname
    units: list[str] = []

    def walk(pfx: str, mod: nn.Module) -> None:
        for cname, child in mod.named_children():
            name = f"{pfx}.{cname}" if pfx else cname
            opens = isinstance(child, (nn.ModuleList, nn.ModuleDict)) or cname in _ENCODER_NAMES
            opens = opens or (pr.ran(name) and pr.spatial(name) is None)
            if opens and any(True for _ in child.children()):
                walk(name, child)
            elif pr.ran(name) and pr.spatial(name) and _has_params(child):
                units.append(name)

    walk(prefix, m)
    return sorted(units, key=pr.order.index)


def stage_points(model: nn.Module, pr: Probe, num_classes: int) -> list[TapPoint]:
    """Encoder stage outputs: up to the deepest (lowest-resolution) building block, the
    last block at each resolution; blocks that output class scores are not stages."""
    units = [u for u in _units(model, pr) if pr.out_shape[u][1] != num_classes]
    if not units:
        return []
    sizes = [pr.spatial(u) for u in units]
    deepest = max(i for i, s in enumerate(sizes) if s == min(sizes))
    return [TapPoint(units[i]) for i in range(deepest + 1)
            if i == deepest or sizes[i + 1] != sizes[i]]


def point_channels(model: nn.Module, points: Sequence[TapPoint],
                   input_shape: Sequence[int]) -> list[int]:
    """Channel count of the activation at each point (one probe forward)."""
    pr = probe(model, input_shape)
    shapes = [(pr.in_shape if p.where == "input" else pr.out_shape).get(p.module)
              for p in points]
    if any(s is None or len(s) != 4 for s in shapes):
        raise ValueError(f"not every point of {[str(p) for p in points]} is a feature map")
    return [s[1] for s in shapes]


def select_points(model: nn.Module, layers: str | list[str], num_classes: int,
                  input_shape: Sequence[int]) -> list[TapPoint]:
    """The activations a layer set names on `model`.

    `output`: the decoder output (input of the final classifier). `atrous`: each atrous
    branch of the ASPP, or where a model has no ASPP each block around a dilated
    convolution; `NotApplicable` if it has neither. `stages`: the encoder stage outputs. `all`:
    atrous + output for models with an ASPP (DeepLabV3/V3+), stages + output otherwise.
    A list: those module names (their outputs).
    """
    validate_layers(layers)
    mods = dict(model.named_modules())
    if isinstance(layers, list):
        bad = [n for n in layers if n not in mods or not n]
        if bad:
            raise UnknownNameError(f"{type(model).__name__} has no module(s) {', '.join(bad)}")
        return [TapPoint(n) for n in layers]
    pr = probe(model, input_shape)
    if layers == "output":
        return [output_point(model, pr, num_classes)]
    if layers == "atrous":
        pts = atrous_points(model, pr)
        if not pts:
            raise NotApplicable(
                "layer set 'atrous' needs an ASPP or dilated convolutions and this model "
                "has neither; valid layer sets for it: output, stages, all"
            )
        return pts
    if layers == "stages":
        return stage_points(model, pr, num_classes)
    if find_aspp(model) is not None:
        return [*atrous_points(model, pr), output_point(model, pr, num_classes)]
    return [*stage_points(model, pr, num_classes), output_point(model, pr, num_classes)]


# -- feature hooks --------------------------------------------------------------------------


class FeatureTap:
    """Forward hooks that keep a copy of the activations at `points` for the next loss.

    Copies (not references), so a later in-place op cannot change what was captured.
    With `only_training`, nothing is kept while the module is in eval mode (the student
    outside its training loop)."""

    def __init__(self, model: nn.Module, points: Sequence[TapPoint], only_training: bool = False):
        self.points = list(points)
        self.only_training = only_training
        self.features: dict[TapPoint, torch.Tensor] = {}
        self._handles = []
        for p in self.points:
            m = model.get_submodule(p.module)
            if p.where == "input":
                h = m.register_forward_pre_hook(lambda mod, a, p=p: self._keep(mod, p, a))
            else:
                h = m.register_forward_hook(lambda mod, a, o, p=p: self._keep(mod, p, o))
            self._handles.append(h)

    def _keep(self, module: nn.Module, point: TapPoint, value: Any) -> None:
        if self.only_training and not module.training:
            return
        t = first_tensor(value)
        if t is not None:
            self.features[point] = t.clone()

    def take(self) -> list[torch.Tensor]:
        """The captured activations in `points` order; clears them for the next step."""
        missing = [str(p) for p in self.points if p not in self.features]
        if missing:
            raise RuntimeError(f"no activation was captured at {', '.join(missing)}")
        out = [self.features[p] for p in self.points]
        self.features.clear()
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.features.clear()


def resize_like(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """`t` bilinearly resized to `ref`'s spatial size (unchanged when it already fits)."""
    if t.shape[-2:] == ref.shape[-2:]:
        return t
    return nn.functional.interpolate(t, size=ref.shape[-2:], mode="bilinear",
                                     align_corners=False)


def attention_map(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 1, H, W): the channel mean of the squared activations
    (Zagoruyko & Komodakis 2017)."""
    return features.float().pow(2).mean(1, keepdim=True)
