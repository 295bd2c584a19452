"""Magnitude masks for unstructured pruning: which weights are prunable, which to zero,
and the AGP sparsity schedule.

Kept apart from the plugin so the sensitivity analysis (bench/sensitivity.py) and tests
prune exactly the way `prune_unstructured` does. A mask is a bool tensor, True = keep.
Counts are exact: a layer of `n` weights at sparsity `s` loses `round(s * n)` of them
(ties broken by position), so the achieved sparsity is the target within one weight.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

import torch
from torch import nn

from bench.config import ConfigError

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                 nn.ConvTranspose3d, nn.Linear)
SCOPES = ("layer", "global")
PROBE_SHAPE = (1, 3, 64, 64)


def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Convolutions and linear layers with a weight, by qualified name, in module order
    (what pruning, k-means sharing and hashing operate on)."""
    return {n: m for n, m in model.named_modules()
            if isinstance(m, WEIGHT_LAYERS)
            and isinstance(getattr(m, "weight", None), torch.Tensor)}


def _probe_input(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    p = next(iter(model.parameters()), None)
    return torch.zeros(*shape, device=p.device if p is not None else "cpu")


def first_layers(model: nn.Module, input_shape: tuple[int, ...] = PROBE_SHAPE) -> list[str]:
    """The weight layer that runs first on an input (the stem convolution)."""
    layers = weight_layers(model)
    order: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp, n=n: order.append(n))
             for n, m in layers.items()]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(_probe_input(model, input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return order[:1]


def last_layers(model: nn.Module, input_shape: tuple[int, ...] = PROBE_SHAPE) -> list[str]:
    """The weight layers whose output reaches the model's output through weight-free ops
    only (the classifier; several where heads are summed, as in LR-ASPP).

    Found on the autograd graph of one forward pass: walk back from the output and stop
    at every node that consumes a weight of a conv/linear layer.
    """
    layers = weight_layers(model)
    by_weight = {id(m.weight): n for n, m in layers.items()}
    saved = {n: m.weight.requires_grad for n, m in layers.items()}
    was_training = model.training
    found: list[str] = []
    try:
        model.eval()
        for m in layers.values():
            m.weight.requires_grad_(True)
        with torch.enable_grad():
            out = model(_probe_input(model, input_shape))
        stack, seen = [out.grad_fn], set()
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            children = [c for c, _ in node.next_functions if c is not None]
            hits = [by_weight[id(c.variable)] for c in children
                    if hasattr(c, "variable") and id(c.variable) in by_weight]
            if hits:
                found += [h for h in hits if h not in found]
                continue
            stack.extend(children)
    finally:
        for n, m in layers.items():
            m.weight.requires_grad_(saved[n])
        model.train(was_training)
    return [n for n in layers if n in found]


def prunable_layers(model: nn.Module, *, exclude_first: bool, exclude_last: bool,
                    exclude: Iterable[str] = (),
                    input_shape: tuple[int, ...] = PROBE_SHAPE) -> list[str]:
    """Names of the layers whose weights unstructured pruning may zero.

    `exclude` holds fnmatch patterns of module names; a pattern that matches no weight
    layer is an error (a typo would otherwise silently prune everything).
    """
    layers = list(weight_layers(model))
    skip: set[str] = set()
    if exclude_first:
        skip.update(first_layers(model, input_shape))
    if exclude_last:
        skip.update(last_layers(model, input_shape))
    for pat in exclude:
        hit = fnmatch.filter(layers, pat)
        if not hit:
            raise ConfigError("exclude", pat, "patterns that match conv/linear layers, such as "
                              f"{', '.join(layers[:12])}{' ...' if len(layers) > 12 else ''}")
        skip.update(hit)
    return [n for n in layers if n not in skip]


def magnitude_masks(weights: dict[str, torch.Tensor], sparsity: float,
                    scope: str) -> dict[str, torch.Tensor]:
    """Keep-masks that zero the `round(sparsity * n)` smallest-magnitude weights, per
    layer (`scope="layer"`) or over all given layers together (`"global"`)."""
    if not 0.0 <= sparsity <= 1.0:
        raise ConfigError("sparsity", sparsity, "a number in [0, 1]")
    if scope not in SCOPES:
        raise ConfigError("scope", scope, "one of " + ", ".join(SCOPES))
    if scope == "layer":
        return {n: _keep_mask(w.detach().abs().reshape(-1), sparsity).view_as(w)
                for n, w in weights.items()}
    if not weights:
        return {}
    flat = torch.cat([w.detach().abs().reshape(-1).float().cpu() for w in weights.values()])
    keep = _keep_mask(flat, sparsity)
    out, start = {}, 0
    for n, w in weights.items():
        out[n] = keep[start:start + w.numel()].view(w.shape).to(w.device)
        start += w.numel()
    return out


def _keep_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Drop exactly k = round(sparsity * n) scores: every score below the k-th smallest,
    then the earliest of those equal to it. That is what a stable sort would drop, found
    with a linear-time selection (kthvalue) instead of sorting millions of weights at every
    pruning step."""
    n = scores.numel()
    k = int(round(sparsity * n))
    keep = torch.ones(n, dtype=torch.bool, device=scores.device)
    if k == n:
        return keep.fill_(False)
    if k:
        threshold = torch.kthvalue(scores, k).values
        below = scores < threshold
        keep &= ~below
        ties = torch.nonzero(scores == threshold).squeeze(1)
        keep[ties[: k - int(below.sum())]] = False
    return keep


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the masked weights in place (the parameters keep their identity, so an
    optimizer holding them stays valid)."""
    layers = dict(model.named_modules())
    with torch.no_grad():
        for name, mask in masks.items():
            w = layers[name].weight
            if mask.device != w.device:
                masks[name] = mask = mask.to(w.device)
            w.mul_(mask)


def agp_sparsity(step: int, *, initial: float, final: float, begin: int, end: int,
                 frequency: int) -> float | None:
    """Zhu & Gupta (2017) polynomial decay: the target sparsity at `step` if a pruning
    event falls on it, else None.

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t_end - t0)) ** 3 for t = t0, t0 + f, ...
    up to t_end, which is always an event so the schedule ends on the final sparsity.
    """
    if frequency < 1:
        raise ValueError(f"frequency must be >= 1 step, got {frequency}")
    if step < begin or step > end:
        return None
    if step != end and (step - begin) % frequency:
        return None
    if end == begin:
        return final
    frac = (step - begin) / (end - begin)
    return final + (initial - final) * (1.0 - frac) ** 3


def layer_zero_counts(model: nn.Module, names: Iterable[str]) -> dict[str, tuple[int, int]]:
    """name -> (zero weights, weights) for the named layers."""
    layers = dict(model.named_modules())
    out = {}
    for n in names:
        w = layers[n].weight.detach()
        out[n] = (int(w.numel() - torch.count_nonzero(w)), int(w.numel()))
    return out


def input_axis(layer: nn.Module) -> int:
    """The weight axis of a layer's input channels: 0 for transposed convolutions (whose
    weight is (in, out/groups, k...)), 1 for convolutions and linear layers."""
    return 0 if isinstance(layer, nn.modules.conv._ConvTransposeNd) else 1


def nm_mask(w: torch.Tensor, n: int, m: int, axis: int) -> torch.Tensor:
    """Keep-mask with the `n` largest magnitudes of every `m` consecutive weights along
    `axis` (N:M semi-structured sparsity, NVIDIA's 2:4 on the input-channel axis as in
    their ASP: every other index fixed, groups run along the input channels). Ties go to
    the earlier position. `w.shape[axis]` must be a multiple of `m`."""
    if not 0 < n < m:
        raise ValueError(f"N:M needs 0 < N < M, got {n}:{m}")
    if w.shape[axis] % m:
        raise ValueError(f"{w.shape[axis]} weights along axis {axis} are not a multiple of {m}")
    moved = w.detach().abs().movedim(axis, -1)
    groups = moved.reshape(-1, m)
    order = torch.sort(groups, dim=1, descending=True, stable=True).indices[:, :n]
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, order, True)
    return keep.reshape(moved.shape).movedim(-1, axis)


def nm_group_counts(w: torch.Tensor, m: int, axis: int) -> torch.Tensor:
    """Nonzeros in every group of `m` consecutive weights along `axis` (what N:M checks)."""
    return (w.detach().movedim(axis, -1).reshape(-1, m) != 0).sum(dim=1)
