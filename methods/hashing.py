"""HashedNets (Chen, Wilson, Tyree, Weinberger & Chen 2015): random weight sharing by a
hash function.

Each conv / linear layer's virtual weight tensor V (numel entries) is backed by a small
real vector w of K = ceil(numel / compression) buckets: V[i] = s(i) * w[h(i)] with a fixed
bucket hash h and sign hash s, both seeded per layer (splitmix64 of the element index, the
layer name and the config seed). The layer is a `torch.nn.utils.parametrize`
parametrisation of `weight` whose stored tensor *is* w, so autograd accumulates the
gradients of all the weights of a bucket into it, the optimizer sees only the buckets, and
the state dict (and therefore the artifact) holds K floats per layer. The hash needs no
storage: `rebuild` recomputes it from the seed in the artifact header.

Initialisation from the trained baseline: each bucket is the least-squares fit of its
weights, the mean of s(i) * W[i] over the i it serves; then the network is fine-tuned.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from bench.config import Settings, setting
from bench.facts import Fact
from bench.method import Method, register_method
from methods.pruning.masks import weight_layers

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a fixed, platform-independent 64-bit mixing function."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hash_layer(numel: int, buckets: int, seed: int, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """(bucket index, sign) of every element of a layer's flattened weight."""
    salt = (int(seed) << 32) ^ zlib.crc32(layer.encode())
    key = _splitmix64(np.array([salt], dtype=np.uint64))[0]
    i = np.arange(numel, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = _splitmix64(i ^ key)
        s = _splitmix64(i ^ _splitmix64(key ^ _GOLDEN))
    index = (h % np.uint64(buckets)).astype(np.int64)
    sign = np.where(s >> np.uint64(63), -1.0, 1.0).astype(np.float32)
    return index, sign


class HashedWeight(nn.Module):
    """Parametrisation V = sign * w[index], with w (K buckets) the stored tensor."""

    def __init__(self, shape: tuple[int, ...], buckets: int, seed: int, layer: str):
        super().__init__()
        self.shape = tuple(shape)
        self.buckets = buckets
        index, sign = hash_layer(math.prod(shape), buckets, seed, layer)
        # recomputed from the seed, never stored
        self.register_buffer("index", torch.from_numpy(index), persistent=False)
        self.register_buffer("sign", torch.from_numpy(sign), persistent=False)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return (w[self.index] * self.sign.to(w.dtype)).view(self.shape)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """Least-squares buckets for a dense weight: the mean of sign * W per bucket."""
        v = weight.detach().reshape(-1) * self.sign.to(weight.dtype)
        sums = torch.zeros(self.buckets, dtype=weight.dtype, device=weight.device)
        sums.index_add_(0, self.index, v)
        counts = torch.bincount(self.index, minlength=self.buckets).to(weight.dtype)
        return sums / counts.clamp(min=1)


def hash_model(model: nn.Module, layers: dict[str, int], seed: int) -> nn.Module:
    """Replace `weight` of every named layer by a HashedWeight of layers[name] buckets."""
    for name, buckets in layers.items():
        module = model.get_submodule(name)
        w = module.weight
        p = HashedWeight(tuple(w.shape), buckets, seed, name).to(w.device)
        parametrize.register_parametrization(module, "weight", p)
    return model


def hashed_buckets(model: nn.Module, name: str) -> torch.Tensor | None:
    module = model.get_submodule(name)
    if not parametrize.is_parametrized(module, "weight"):
        return None
    return module.parametrizations.weight.original


@dataclass
class HashingStats(Fact):
    """Hashed layers, their virtual weights, and the real buckets behind them."""

    key: ClassVar[str] = "hashing"
    layers: int
    virtual_weights: int
    buckets: int


@register_method("hashing", family="weight_sharing")
class HashedNets(Method):
    """Every conv / linear weight generated from K hashed buckets."""

    version = 1
    sweep = [{"compression": 4}, {"compression": 8}, {"compression": 16}]

    @dataclass
    class Config(Settings):
        # virtual weights per real weight: K = ceil(numel / compression)
        compression: float = setting(8.0, ge=1)
        seed: int = setting(0, ge=0, lt=2**31)  # hash seed, stored in the artifact
        finetune_epochs: int = setting(-1, ge=-1)  # -1: the budget's

    def __init__(self, config=None):
        super().__init__(config)
        self.layers: dict[str, int] = {}

    def compress(self, ctx, model: nn.Module) -> nn.Module:
        c = float(self.config.compression)
        owners: dict[int, str] = {}
        for name, m in weight_layers(model).items():
            other = owners.setdefault(id(m.weight), name)
            if other != name:
                raise NotImplementedError(
                    f"hashing: layers {other} and {name} share one weight tensor (a shared "
                    "kernel, as in KSAC); hashing them separately would untie them")
        self.layers = {name: max(1, math.ceil(m.weight.numel() / c))
                       for name, m in weight_layers(model).items()}
        hash_model(model, self.layers, self.config.seed)
        virtual = sum(math.prod(model.get_submodule(n).weight.shape) for n in self.layers)
        ctx.report(HashingStats(layers=len(self.layers), virtual_weights=virtual,
                                buckets=sum(self.layers.values())))
        return model

    def finetune_epochs(self, ctx) -> int:
        e = self.config.finetune_epochs
        return ctx.budget.finetune_epochs if e < 0 else e

    def artifact_meta(self, model: nn.Module) -> dict[str, Any]:
        return {"seed": self.config.seed, "layers": self.layers}

    def rebuild(self, model: nn.Module, meta: dict[str, Any]) -> nn.Module:
        self.layers = {str(k): int(v) for k, v in meta["layers"].items()}
        return hash_model(model, self.layers, int(meta["seed"]))

    def check(self, model: nn.Module, meta: dict[str, Any]) -> list[str]:
        problems = []
        declared = {str(k): int(v) for k, v in meta.get("layers", {}).items()}
        free = 0
        for name, k in declared.items():
            w = hashed_buckets(model, name)
            if w is None:
                problems.append(f"{name} is not hashed")
                continue
            free += w.numel()
            if w.numel() != k:
                problems.append(f"{name}: {w.numel()} buckets, header declares {k}")
                continue
            index, sign = hash_layer(model.get_submodule(name).weight.numel(), k,
                                     int(meta["seed"]), name)
            virtual = model.get_submodule(name).weight.detach().reshape(-1).cpu()
            expect = w.detach().cpu()[torch.from_numpy(index)] * torch.from_numpy(sign)
            if not torch.equal(virtual, expect):
                problems.append(f"{name}: weights are not sign * buckets[hash] for the seed")
        if free != sum(declared.values()):
            problems.append(f"{free} free weights != sum of K {sum(declared.values())}")
        if not declared:
            problems.append("no layer is hashed")
        return problems

    def describe(self) -> str:
        return f"compression={self.config.compression:g}"
