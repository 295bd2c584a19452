"""Trained weight sharing by k-means (Gong et al. 2014; stage two of Deep Compression,
Han, Mao & Dally 2016).

Every conv / linear layer's weights are clustered into 2**bits shared values (linear
initialisation of the centroids over [min, max], as Deep Compression found best), then
fine-tuned: the gradient of a centroid is the sum of the gradients of the weights that
share it. We keep the model a plain zoo model and implement that update on the weights
themselves: a gradient hook replaces each weight's gradient by its cluster's summed
gradient, so every weight of a cluster receives the same update (SGD, momentum, weight
decay and Adam are all elementwise), and after each step the cluster is re-tied exactly.
This composes with any pruning stage before it: weights that are exactly zero get a
reserved centroid fixed at 0 (index 0) that receives no gradient, so zeros stay zero.

Storage (`codebook` encoding) per layer: the codebook in the weight's dtype and a b-bit
index per weight ("dense" layout), or, for a sparse layer, Deep Compression's relative
indexing: for each nonzero, the gap since the previous entry in `gap_bits` bits plus its
index, with filler entries (index 0, value 0) where a gap overflows ("sparse" layout).
Whichever is smaller is written; `huffman` can then entropy-code both index streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from bench.config import Settings, setting
from bench.facts import Fact
from bench.method import Method, register_method
from bench.registry import UnknownNameError
from methods.codecs.codebook import encode_codebook
from methods.pruning.masks import weight_layers

INITS = ("linear", "density", "random")


# -- which layers -------------------------------------------------------------------------

def execution_order(model: nn.Module, names: list[str], input_shape) -> list[str]:
    """`names` in the order a forward pass calls them (registration order may differ)."""
    order: list[str] = []
    handles = [model.get_submodule(n).register_forward_hook(
        lambda mod, inp, out, n=n: order.append(n) if n not in order else None) for n in names]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(*input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return order + [n for n in names if n not in order]


def _leaf(module: nn.Module) -> nn.Parameter:
    """The trainable tensor behind `module.weight` (torch.nn.utils.prune keeps it as
    `weight_orig` and recomputes `weight = weight_orig * weight_mask` in a pre-hook)."""
    for key in ("weight", "weight_orig"):
        p = module._parameters.get(key)
        if p is not None:
            return p
    raise TypeError(f"{type(module).__name__} has no weight parameter to share")


# -- clustering ---------------------------------------------------------------------------

def kmeans_1d(values: torch.Tensor, k: int, init: str = "linear", iterations: int = 30,
              seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on scalars: (centroids sorted ascending, assignment per value).

    In one dimension a cluster is a run of the sorted values between two midpoints, so
    after one sort an iteration costs O(k log n): binary-search the midpoints, read the
    cluster sums off a prefix sum. Empty clusters keep their centroid (they are unused)."""
    x = values.detach().double().flatten().cpu()
    if x.numel() == 0:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
    k = max(1, min(k, x.numel()))
    xs = x.sort().values
    if init == "linear":
        c = torch.linspace(float(xs[0]), float(xs[-1]), k, dtype=torch.float64)
    elif init == "density":
        c = torch.quantile(xs, torch.linspace(0, 1, k, dtype=torch.float64))
    elif init == "random":
        g = torch.Generator().manual_seed(seed)
        c = x[torch.randperm(x.numel(), generator=g)[:k]]
    else:
        raise UnknownNameError(f"unknown k-means init {init!r}; valid choices: "
                               f"{', '.join(INITS)}")
    c = c.sort().values
    prefix = torch.cat([torch.zeros(1, dtype=torch.float64), xs.cumsum(0)])
    n = torch.tensor([xs.numel()])
    for _ in range(max(iterations, 1)):
        # cluster i holds the sorted values in (mid[i-1], mid[i]]
        cut = torch.cat([torch.zeros(1, dtype=torch.long),
                         torch.searchsorted(xs, (c[1:] + c[:-1]) / 2, right=True), n])
        counts = cut[1:] - cut[:-1]
        sums = prefix[cut[1:]] - prefix[cut[:-1]]
        new = torch.where(counts > 0, sums / counts.clamp(min=1), c).sort().values
        if torch.equal(new, c):
            break
        c = new
    return c, torch.searchsorted((c[1:] + c[:-1]) / 2, x)


@dataclass
class _Shared:
    """One layer's weight sharing while fine-tuning."""

    index: torch.Tensor  # cluster of every weight (flat)
    clusters: int
    reserved_zero: bool  # cluster 0 is the pruned weights, fixed at 0
    representative: torch.Tensor  # one flat position per used cluster
    used: torch.Tensor  # the clusters those positions belong to
    handle: Any = None

    def shared_grad(self, grad: torch.Tensor) -> torch.Tensor:
        """d loss / d centroid = sum of its weights' gradients, broadcast back."""
        flat = grad.reshape(-1)
        per = torch.zeros(self.clusters, dtype=flat.dtype, device=flat.device)
        per.index_add_(0, self.index, flat)
        if self.reserved_zero:
            per[0] = 0
        return per[self.index].view_as(grad)

    @torch.no_grad()
    def retie(self, weight: torch.Tensor) -> None:
        flat = weight.view(-1)
        values = torch.zeros(self.clusters, dtype=flat.dtype, device=flat.device)
        values[self.used] = flat[self.representative]
        if self.reserved_zero:
            values[0] = 0
        flat.copy_(values[self.index])


def share_weights(weight: torch.Tensor, bits: int, init: str, iterations: int,
                  seed: int = 0) -> tuple[torch.Tensor, _Shared]:
    """Cluster `weight` into at most 2**bits values (one of them 0 if any weight is 0)."""
    flat = weight.detach().reshape(-1)
    zero = flat == 0
    reserved = bool(zero.any())
    free = (1 << bits) - int(reserved)
    centroids, assign = kmeans_1d(flat[~zero], free, init, iterations, seed)
    index = torch.zeros(flat.numel(), dtype=torch.long)
    index[(~zero).cpu()] = assign + int(reserved)
    codebook = torch.cat([torch.zeros(int(reserved), dtype=torch.float64), centroids])
    quantized = codebook[index].to(weight.dtype).view_as(weight)
    idx_np = index.numpy()
    used, first = np.unique(idx_np, return_index=True)
    dev = weight.device
    info = _Shared(index.to(dev), len(codebook), reserved,
                   torch.from_numpy(first).to(dev), torch.from_numpy(used).to(dev))
    return quantized.to(dev), info


# -- the method ---------------------------------------------------------------------------

@dataclass
class KMeansClusters(Fact):
    """What was clustered: layers, weights, their mean index bits, the wide (8-bit) ends."""

    key: ClassVar[str] = "kmeans"
    layers: int
    shared_weights: int
    mean_bits: float
    first_last: list[str]


@dataclass
class KMeansStorage(Fact):
    """How the `codebook` encoding stored them: layers per layout, index bytes."""

    key: ClassVar[str] = "kmeans"
    dense: int
    sparse: int
    index_bytes: int


@register_method("kmeans", family="weight_sharing")
class KMeansSharing(Method):
    """k-means weight sharing with centroid fine-tuning."""

    version = 1
    sweep = [{"bits": 2}, {"bits": 3}, {"bits": 4}, {"bits": 5}]

    @dataclass
    class Config(Settings):
        # index bits of the inner conv / linear layers (2**bits shared values)
        bits: int = setting(5, ge=1, le=16)
        first_last_bits: int = setting(8, ge=1, le=16)  # the first and last layer run
        init: str = setting("linear", choices=INITS)  # centroid initialisation
        iterations: int = setting(30, ge=1)  # Lloyd iterations
        finetune_epochs: int = setting(-1, ge=-1)  # centroid fine-tuning epochs; -1: budget's

    def __init__(self, config=None):
        super().__init__(config)
        self.layer_bits: dict[str, int] = {}
        self._shared: dict[str, _Shared] = {}

    def compress(self, ctx, model: nn.Module) -> nn.Module:
        layers = weight_layers(model)
        order = execution_order(model, list(layers), ctx.input_shape)
        ends = {order[0], order[-1]} if order else set()
        self.layer_bits = {}
        seen: set[int] = set()
        for name in order:
            bits = self.config.first_last_bits if name in ends else self.config.bits
            leaf = _leaf(layers[name])
            if id(leaf) in seen:  # a kernel shared by several layers (KSAC): cluster it once
                continue
            seen.add(id(leaf))
            effective = layers[name].weight.detach()  # zeros of a pruning mask included
            quantized, info = share_weights(effective, bits, self.config.init,
                                            self.config.iterations, seed=ctx.seed)
            with torch.no_grad():
                leaf.copy_(quantized)
            info.handle = leaf.register_hook(info.shared_grad)
            self._shared[name] = info
            self.layer_bits[name] = bits
        n = sum(layers[k].weight.numel() for k in self.layer_bits)
        ctx.report(KMeansClusters(
            layers=len(self.layer_bits), shared_weights=n,
            mean_bits=sum(b * layers[k].weight.numel() for k, b in self.layer_bits.items())
            / max(n, 1),
            first_last=sorted(ends)))
        return model

    def finetune_epochs(self, ctx) -> int:
        e = self.config.finetune_epochs
        return ctx.budget.finetune_epochs if e < 0 else e

    def on_step(self, ctx, model: nn.Module, step: int, total_steps: int) -> None:
        for name, info in self._shared.items():
            info.retie(_leaf(model.get_submodule(name)))

    def finalize(self, ctx, model: nn.Module) -> nn.Module:
        for name, info in self._shared.items():
            if info.handle is not None:
                info.handle.remove()
            module = model.get_submodule(name)
            if "weight" in module._parameters:  # a pruning stage may have baked its mask
                info.retie(module.weight)
                with torch.no_grad():
                    module.weight.add_(0.0)  # -0.0 -> +0.0: one zero, stored as one value
        self._shared = {}
        problems = self.check(model, self.artifact_meta(model))
        if problems:
            raise RuntimeError("weight sharing broke during fine-tuning: " + "; ".join(problems))
        return model

    # -- artifact -----------------------------------------------------------------------
    def encode(self, ctx, model, tensors):
        out = dict(tensors)
        stats = {"dense": 0, "sparse": 0, "index_bytes": 0}
        for name, bits in self.layer_bits.items():
            key = f"{name}.weight"
            if key not in out:
                raise KeyError(f"kmeans: {key} is not in the model state")
            if out[key] is not None and out[key].encoding == "alias":  # stored once, there
                key = out[key].params["of"]
            et = encode_codebook(model.get_submodule(name).weight.detach().cpu(), bits)
            out[key] = et
            stats[et.params["layout"]] += 1
            stats["index_bytes"] += sum(len(b.data) for k, b in et.blobs.items()
                                        if k != "codebook")
        ctx.report(KMeansStorage(**stats))
        return out

    def artifact_meta(self, model: nn.Module) -> dict[str, Any]:
        wide = {k: b for k, b in self.layer_bits.items() if b != self.config.bits}
        return {"bits": self.config.bits, "layers": list(self.layer_bits), "wide": wide}

    def check(self, model: nn.Module, meta: dict[str, Any]) -> list[str]:
        problems = []
        for name in meta.get("layers", []):
            bits = int(meta.get("wide", {}).get(name, meta["bits"]))
            try:
                w = model.get_submodule(name).weight.detach()
            except AttributeError:
                problems.append(f"layer {name} is missing")
                continue
            distinct = int(torch.unique(w).numel())
            if distinct > 1 << bits:
                problems.append(f"{name}: {distinct} distinct values > 2**{bits}")
        if not meta.get("layers"):
            problems.append("no layer is weight-shared")
        return problems

    def describe(self) -> str:
        return f"bits={self.config.bits}/{self.config.first_last_bits}"
