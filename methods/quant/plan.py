"""Where the quantizers go: a plan derived from one recorded forward pass.

The rules aim at the graph onnxruntime turns into integer kernels, where every convolution
reads DequantizeLinear inputs and writes straight into a QuantizeLinear:

* a conv whose output feeds only a BatchNorm has the BatchNorm folded into its weights and
  bias (before quantization, so the integer weights are the folded ones);
* a conv whose (folded) output feeds only a ReLU quantizes after it: the ReLU becomes an
  unsigned activation quantizer (onnxruntime fuses ReLU into the integer conv);
* any other conv output is quantized (signed) right at the conv, so the conv stays integer
  even when float work follows it (PReLU, unpooling, residual additions);
* conv outputs that reach the model output only through cropping, reshaping, resizing or
  additions stay float (the logits);
* the output of a PReLU, LayerNorm, GELU or Softmax module that a conv, linear or matmul
  reads (directly or through grid-keeping ops, below) is quantized once, where it is
  produced (signed; unsigned after Softmax), like a ReLU's: every reader gets the same
  codes, and the float op sits between one DequantizeLinear and one QuantizeLinear (no
  onnxruntime integer kernel takes it, so that is the smallest float island it can be).
  An output only float ops read (a residual add) gets none: there it would only add a
  QuantizeLinear/DequantizeLinear pair. The conv before a PReLU keeps its own output
  quantizer: onnxruntime fuses a conv into QLinearConv only when a QuantizeLinear
  follows it (docs/quantization.md has both alternatives measured on ENet);
* a conv input that no quantizer produced gets its own quantizer, except where it comes
  from one through value-preserving ops (max pooling, slicing, reshapes, transposes,
  unbinding): there it reuses that quantizer's scale, so the op can run on int8 in
  between;
* the operands of activation x activation matmuls (attention's Q·Kᵀ and attn·V, written
  as `models._common.MatMul` modules) follow the conv-input rule: read straight from a
  quantizer (the Softmax's), requantized at the scale of the quantizer whose grid they
  lie on (the Q and KV Linears' output quantizers, through reshapes and transposes: exact,
  and it puts DequantizeLinear right at the MatMul, which onnxruntime then runs on
  integers), or given their own quantizer. A `torch.matmul` between activations in a
  forward has no place for a quantizer: it stays float and the plan counts it;
* `first_last_bits` widens the first and last layers' weights and input activations;
* grouped transposed convolutions get a per-tensor weight scale (brevitas cannot take
  per-channel statistics of them).

The plan is JSON (the artifact stores it) and is all `rebuild` needs to recreate the
quantized structure of a freshly built zoo model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from methods.quant.modules import (
    ActQuant,
    ActSpec,
    LayerSpec,
    MatMulSpec,
    PostQuant,
    QuantMatMul,
    frozen_layer,
)
from methods.quant.trace import Call, Trace
from models._common import MatMul

COMPUTE = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
_RELUS = (nn.ReLU,)
_NONNEG_MODULES = (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Hardsigmoid)
_NONNEG_FUNCS = {"relu", "relu_", "relu6", "sigmoid", "hardsigmoid"}
# ops through which a value still is on its quantizer's grid (scale and zero point)
_GRID_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.Flatten)
_GRID_FUNCS = {"max_pool2d", "max_pool1d", "__getitem__", "narrow", "contiguous", "view",
               "reshape", "flatten", "max_pool2d_with_indices", "transpose", "permute", "t",
               "unflatten", "unbind", "chunk", "split", "squeeze", "unsqueeze"}
# ops with several outputs, each a piece of the input (any output keeps its grid)
_SPLIT_FUNCS = {"unbind", "chunk", "split"}
# modules whose output is quantized where it is produced (signed unless non-negative)
POST_QUANT = (nn.PReLU, nn.LayerNorm, nn.GELU, nn.Softmax)
_NONNEG_POST = (nn.Softmax,)
# activation x activation products written as functions (they stay float; counted)
_MATMUL_FUNCS = {"matmul", "__matmul__", "__rmatmul__", "bmm"}
# ops that may sit between the last conv and the model output without quantizing logits
_OUTPUT_FUNCS = {"__getitem__", "narrow", "contiguous", "view", "reshape", "flatten",
                 "squeeze", "interpolate", "upsample", "add", "__add__", "__iadd__", "add_",
                 "__radd__"}


@dataclass
class QuantConfig:
    weight_bits: int = 8
    act_bits: int = 8  # 32: weights only
    per_channel: bool = True
    first_last_bits: int | None = 8  # None: first and last layers like the others


@dataclass
class QuantPlan:
    folds: list[tuple[str, str]] = field(default_factory=list)  # (conv, batchnorm)
    layers: dict[str, LayerSpec] = field(default_factory=dict)  # compute layer -> spec
    acts: dict[str, ActSpec] = field(default_factory=dict)  # ReLU module -> quantizer
    # PReLU / LayerNorm / GELU / Softmax module -> the quantizer on its output
    posts: dict[str, ActSpec] = field(default_factory=dict)
    # layer -> the quantizer whose scale its input quantizer reuses: "act:<relu>",
    # "out:<layer>" or "post:<module>"
    ties: dict[str, str] = field(default_factory=dict)
    # layer -> the quantizer its input comes straight from (the layer has no in_q)
    feeds: dict[str, str] = field(default_factory=dict)
    # the first and last layers `first_last_bits` pinned (planning only: not in the meta)
    edges: list[str] = field(default_factory=list)
    # MatMul module -> the quantizers on its operands
    matmuls: dict[str, MatMulSpec] = field(default_factory=dict)
    # activation x activation products written as torch functions, left float (planning
    # only: the record's QuantSites fact reports it)
    float_matmuls: int = 0
    # PReLU / LayerNorm / GELU / Softmax modules left without an output quantizer, by
    # type (planning only, like `float_matmuls`)
    float_posts: dict[str, int] = field(default_factory=dict)

    def post_counts(self, model: nn.Module) -> dict[str, int]:
        """Output quantizers by the type of module they follow (e.g. {"LayerNorm": 9})."""
        out: dict[str, int] = {}
        for name in self.posts:
            m = model.get_submodule(name)
            t = type(m.module if isinstance(m, PostQuant) else m).__name__  # wrapped or not
            out[t] = out.get(t, 0) + 1
        return dict(sorted(out.items()))

    def to_meta(self) -> dict[str, Any]:
        meta = {"folds": [list(f) for f in self.folds],
                "layers": {k: v.to_dict() for k, v in self.layers.items()},
                "acts": {k: v.to_dict() for k, v in self.acts.items()},
                "ties": dict(self.ties), "feeds": dict(self.feeds)}
        # absent when empty: a CNN's artifact stays what it was before they existed
        if self.posts:
            meta["posts"] = {k: v.to_dict() for k, v in self.posts.items()}
        if self.matmuls:
            meta["matmuls"] = {k: v.to_dict() for k, v in self.matmuls.items()}
        return meta

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> QuantPlan:
        return cls(folds=[tuple(f) for f in meta.get("folds", [])],
                   layers={k: LayerSpec.from_dict(v) for k, v in meta.get("layers", {}).items()},
                   acts={k: ActSpec.from_dict(v) for k, v in meta.get("acts", {}).items()},
                   # plans stored before output quantizers existed have none
                   posts={k: ActSpec.from_dict(v) for k, v in meta.get("posts", {}).items()},
                   matmuls={k: MatMulSpec.from_dict(v)
                            for k, v in meta.get("matmuls", {}).items()},
                   ties=dict(meta.get("ties", {})), feeds=dict(meta.get("feeds", {})))


class UnsupportedModelError(ValueError):
    """The model has a structure this quantizer cannot handle; the message says which."""


def _single_call(trace: Trace, call: Call) -> bool:
    return len(trace.module_calls.get(call.name, [])) == 1


def plan_quantization(model: nn.Module, trace: Trace, cfg: QuantConfig) -> QuantPlan:
    check_config(cfg)
    compute = list(trace.calls_of(COMPUTE))
    if not compute:
        raise UnsupportedModelError("the model has no Conv2d, ConvTranspose2d or Linear "
                                    "layer to quantize")
    for c in compute:
        if not _single_call(trace, c):
            raise UnsupportedModelError(
                f"layer {c.name!r} runs {len(trace.module_calls[c.name])} times in one "
                "forward pass; quantizing shared layers is not supported")
        if isinstance(c.module, (nn.Conv2d, nn.ConvTranspose2d)) and \
                c.module.padding_mode != "zeros":
            raise UnsupportedModelError(f"layer {c.name!r} uses padding_mode="
                                        f"{c.module.padding_mode!r}; only 'zeros' is supported")
    outputs = set(trace.output_values)
    out_memo: dict[int, bool] = {}

    def on_output_path(v: int) -> bool:
        if v not in out_memo:
            out_memo[v] = False  # cycle guard
            cons = trace.consumers(v)
            out_memo[v] = v in outputs or (bool(cons) and all(
                c.module is None and c.name in _OUTPUT_FUNCS
                and all(on_output_path(o) for o in c.outputs) for c in cons))
        return out_memo[v]

    plan = QuantPlan()
    y: dict[str, int] = {}  # compute layer -> its output value after a folded BatchNorm
    for c in compute:
        v = c.outputs[0]
        cons = trace.consumers(v)
        bn = cons[0] if len(cons) == 1 else None
        if (isinstance(c.module, (nn.Conv2d, nn.ConvTranspose2d)) and bn is not None
                and type(bn.module) is nn.BatchNorm2d and _single_call(trace, bn)
                and bn.module.track_running_stats and v not in outputs):
            plan.folds.append((c.name, bn.name))
            v = bn.outputs[0]
        y[c.name] = v

    quant_acts = cfg.act_bits != 32
    sources: dict[str, ActSpec] = {}  # "act:<relu>" / "out:<layer>" / "post:<m>" -> spec
    source_of: dict[int, str] = {}  # quantized value -> its source
    for c in compute:
        v = y[c.name]
        if not quant_acts or on_output_path(v):
            continue
        cons = trace.consumers(v)
        if len(cons) == 1 and isinstance(cons[0].module, _RELUS) and \
                _single_call(trace, cons[0]):
            key = f"act:{cons[0].name}"
            sources[key] = ActSpec(cfg.act_bits, False)
            source_of[cons[0].outputs[0]] = key
        else:
            key = f"out:{c.name}"
            sources[key] = ActSpec(cfg.act_bits, True)
            source_of[v] = key

    integer_ops = (*COMPUTE, MatMul)

    def read_by_integer_op(v: int) -> bool:
        """Whether a conv, linear or MatMul reads `v`, directly or through ops that keep
        a quantizer's grid (reshapes, transposes, max-pooling)."""
        for c in trace.consumers(v):
            if c.module is not None and isinstance(c.module, integer_ops):
                return True
            grid = (c.module is not None and isinstance(c.module, _GRID_MODULES)) or (
                c.module is None and c.name in _GRID_FUNCS)
            if grid and c.inputs and c.inputs[0] == v and any(
                    read_by_integer_op(o) for o in c.outputs):
                return True
        return False

    for c in trace.calls_of(POST_QUANT):
        v = c.outputs[0] if c.outputs else None
        if not quant_acts or v is None or not _single_call(trace, c) or \
                on_output_path(v) or not read_by_integer_op(v):
            t = type(c.module).__name__
            plan.float_posts[t] = plan.float_posts.get(t, 0) + 1
            continue
        key = f"post:{c.name}"
        sources[key] = ActSpec(cfg.act_bits, not isinstance(c.module, _NONNEG_POST))
        source_of[v] = key

    def grid_source(v: int) -> str | None:
        """The quantizer whose grid value `v` lies on (through max-pool, slicing...)."""
        while v not in source_of:
            p = trace.producer(v)
            if p is None or not p.inputs or (v != p.outputs[0] and not (
                    p.module is None and p.name in _SPLIT_FUNCS)):
                return None
            if not ((p.module is not None and isinstance(p.module, _GRID_MODULES))
                    or (p.module is None and p.name in _GRID_FUNCS)):
                return None
            v = p.inputs[0]
        return source_of[v]

    def nonneg(v: int) -> bool:
        p = trace.producer(v)
        if p is None:
            return False
        if p.module is not None:
            if isinstance(p.module, _NONNEG_MODULES):
                return True
            return isinstance(p.module, _GRID_MODULES) and bool(p.inputs) and nonneg(
                p.inputs[0])
        return p.name in _NONNEG_FUNCS

    plan.float_matmuls = sum(
        1 for c in trace.calls if c.module is None and c.name in _MATMUL_FUNCS
        and len(c.inputs) >= 2 and all(trace.producer(v) is not None for v in c.inputs[:2]))

    def operand(x: int) -> tuple[str, str | ActSpec | None]:
        """How a value read by an integer op gets quantized: straight from a quantizer,
        tied to one whose grid it lies on, or by a quantizer of its own."""
        if not quant_acts:
            return ("none", None)
        if x in source_of:
            return ("direct", source_of[x])
        if (s := grid_source(x)) is not None:
            return ("tied", s)
        return ("own", ActSpec(cfg.act_bits, not nonneg(x)))

    inputs = {c.name: operand(c.inputs[0]) for c in compute}  # layer -> (how, source/spec)
    matmuls = [c for c in trace.calls_of((MatMul,))
               if quant_acts and _single_call(trace, c) and len(c.inputs) == 2]
    plan.float_matmuls += sum(1 for c in trace.calls_of((MatMul,)) if c not in matmuls)
    operands = {c.name: [operand(v) for v in c.inputs] for c in matmuls}

    w_bits = {c.name: cfg.weight_bits for c in compute}
    if cfg.first_last_bits is not None:
        edge = [compute[0]] + [c for c in compute if on_output_path(y[c.name])]
        plan.edges = list(dict.fromkeys(c.name for c in edge))
        for c in edge:
            w_bits[c.name] = cfg.first_last_bits
            how, src = inputs[c.name]
            if how == "own":
                inputs[c.name] = (how, ActSpec(cfg.first_last_bits, src.signed))
            elif how in ("direct", "tied"):
                sources[src] = ActSpec(cfg.first_last_bits, sources[src].signed)

    for c in compute:
        how, src = inputs[c.name]
        in_q = src if how == "own" else sources[src] if how == "tied" else None
        if how == "tied":
            plan.ties[c.name] = src
        elif how == "direct":
            plan.feeds[c.name] = src
        # brevitas cannot take per-channel statistics of grouped transposed convolutions
        # (their weight's axis 1 is out/groups wide): those fall back to a per-tensor scale
        per_channel = cfg.per_channel and not (
            isinstance(c.module, nn.ConvTranspose2d) and c.module.groups > 1)
        plan.layers[c.name] = LayerSpec(w_bits[c.name], per_channel, in_q,
                                        sources.get(f"out:{c.name}"))
    for name, ops in operands.items():
        specs = []
        for how, src in ops:
            if how == "direct":
                specs += [None, None]
            elif how == "tied":
                specs += [sources[src], src]
            else:
                specs += [src, None]
        plan.matmuls[name] = MatMulSpec(specs[0], specs[2], specs[1], specs[3])
    plan.acts = {k[4:]: s for k, s in sources.items() if k.startswith("act:")}
    plan.posts = {k[5:]: s for k, s in sources.items() if k.startswith("post:")}
    return plan


def check_config(cfg: QuantConfig) -> None:
    if not (isinstance(cfg.weight_bits, int) and 2 <= cfg.weight_bits <= 8):
        raise ValueError(f"weight_bits must be an integer in 2..8, got {cfg.weight_bits!r}")
    if cfg.act_bits not in (4, 5, 6, 7, 8, 32):
        raise ValueError(f"act_bits must be 4..8 or 32 (weights only), got {cfg.act_bits!r}")
    if cfg.first_last_bits is not None and not (
            isinstance(cfg.first_last_bits, int) and 2 <= cfg.first_last_bits <= 8):
        raise ValueError(f"first_last_bits must be 2..8 or null, got {cfg.first_last_bits!r}")
    if not isinstance(cfg.per_channel, bool):
        raise ValueError(f"per_channel must be true or false, got {cfg.per_channel!r}")


# -- applying a plan ----------------------------------------------------------------------

@torch.no_grad()
def fold_batchnorms(model: nn.Module, folds: list[tuple[str, str]]) -> None:
    """Fold each BatchNorm into the conv before it (in place); the BatchNorm becomes
    an Identity and the conv gains a bias."""
    for conv_name, bn_name in folds:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        std = torch.sqrt(bn.running_var + bn.eps)
        gamma = bn.weight if bn.affine else torch.ones_like(std)
        beta = bn.bias if bn.affine else torch.zeros_like(std)
        s = gamma / std
        w = conv.weight
        if isinstance(conv, nn.ConvTranspose2d):  # (in, out/g, kh, kw), out split by group
            g = conv.groups
            wv = w.view(g, w.shape[0] // g, w.shape[1], *w.shape[2:])
            wv.mul_(s.view(g, 1, -1, 1, 1))
        else:
            w.mul_(s.view(-1, *([1] * (w.dim() - 1))))
        b = conv.bias if conv.bias is not None else torch.zeros_like(s)
        new_bias = (b - bn.running_mean) * s + beta
        if conv.bias is None:
            conv.bias = nn.Parameter(new_bias)
        else:
            conv.bias.copy_(new_bias)
        model.set_submodule(bn_name, nn.Identity())


def prepare_folded_structure(model: nn.Module, folds: list[tuple[str, str]]) -> None:
    """The structure `fold_batchnorms` leaves, without computing values (for loading)."""
    for conv_name, bn_name in folds:
        conv = model.get_submodule(conv_name)
        if conv.bias is None:
            n = conv.out_channels
            conv.bias = nn.Parameter(torch.zeros(n, device=conv.weight.device))
        model.set_submodule(bn_name, nn.Identity())


def apply_frozen_structure(model: nn.Module, plan: QuantPlan) -> nn.Module:
    """Turn a freshly built float model into the plan's frozen quantized structure (values
    uninitialised: the artifact's state loads next)."""
    prepare_folded_structure(model, plan.folds)
    for name, spec in plan.layers.items():
        model.set_submodule(name, frozen_layer(model.get_submodule(name), spec))
    for name, spec in plan.acts.items():
        model.set_submodule(name, ActQuant(spec))
    for name, spec in plan.posts.items():
        model.set_submodule(name, PostQuant(model.get_submodule(name), ActQuant(spec)))
    for name, spec in plan.matmuls.items():
        model.set_submodule(name, QuantMatMul(model.get_submodule(name),
                                              *(ActQuant(q) if q else None
                                                for q in (spec.a_q, spec.b_q))))
    return model
