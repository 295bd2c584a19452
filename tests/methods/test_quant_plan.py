"""Quantization plan beyond convolutions: a tiny SegFormer's LayerNorm and GELU outputs,
Softmax and both operands of each attention matmul read as quantized codes (checked on the
values the frozen model actually multiplies), and ENet's PReLU outputs quantized once,
where the conv after them reads them."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from methods.onnx.export import export_onnx
from methods.onnx.runtime import count_ops
from methods.quant.brevitas_layers import calibrate, freeze, to_brevitas
from methods.quant.modules import FROZEN_LAYERS, ActQuant, PostQuant, QuantMatMul
from methods.quant.plan import (
    QuantConfig,
    QuantPlan,
    apply_frozen_structure,
    fold_batchnorms,
    plan_quantization,
)
from methods.quant.trace import trace_dataflow
from models import create_model
from models.segformer import SegFormer

TINY = dict(widths=(8, 16), depths=(1, 1), heads=(1, 2), sr_ratios=(2, 1), mlp_ratio=2,
            decoder_width=8)


def _tiny_segformer() -> SegFormer:
    torch.manual_seed(0)
    return SegFormer(4, **TINY).eval()


def _quantized(model: nn.Module, x: torch.Tensor, **cfg) -> tuple[nn.Module, QuantPlan]:
    plan = plan_quantization(model, trace_dataflow(model, x[:1]), QuantConfig(**cfg))
    fold_batchnorms(model, plan.folds)
    to_brevitas(model, plan)
    calibrate(model, x, 4, torch.device("cpu"))
    return freeze(model, plan), plan


def _on_grid(t: torch.Tensor, scales: list[torch.Tensor]) -> bool:
    """Whether every value of `t` is an integer multiple of one of `scales`."""
    for s in scales:
        q = t.double() / s.double()
        if bool(((q - q.round()).abs() < 1e-3).all()):
            return True
    return False


class _Matmuls(TorchFunctionMode):
    """The operands of every activation x activation matmul of a forward pass."""

    def __init__(self):
        super().__init__()
        self.operands: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("matmul", "__matmul__"):
            self.operands.append((args[0].detach(), args[1].detach()))
        return func(*args, **(kwargs or {}))


@torch.no_grad()
def float_reads(model: nn.Module, x: torch.Tensor) -> list[str]:
    """What integer kernels would read in float: inputs of frozen layers without an input
    quantizer of their own, and matmul operands, that lie on no activation quantizer's
    grid. Empty when everything a conv, linear or matmul reads is quantized."""
    scales = [m.scale for m in model.modules() if isinstance(m, ActQuant)]
    found: list[str] = []
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, FROZEN_LAYERS) and m.in_q is None:
            def check(mod, args, name=name):
                if not _on_grid(args[0], scales):
                    found.append(name)
            hooks.append(m.register_forward_pre_hook(check))
    mode = _Matmuls()
    try:
        with mode:
            model(x)
    finally:
        for h in hooks:
            h.remove()
    for i, (a, b) in enumerate(mode.operands):
        found += [f"matmul {i} operand {k}" for k, t in (("a", a), ("b", b))
                  if not _on_grid(t, scales)]
    return found


@pytest.fixture(scope="module")
def segformer_q():
    x = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    model, plan = _quantized(_tiny_segformer(), x)
    return model, plan, x


def test_segformer_reads_layernorm_gelu_softmax_and_matmul_operands_quantized(segformer_q):
    model, plan, x = segformer_q
    # 9 LayerNorms: the two patch-embedding ones feed only the next LayerNorm and the
    # residual add (no integer op reads them), the other 7 feed a Linear or conv
    assert plan.post_counts(model) == {"GELU": 2, "LayerNorm": 7, "Softmax": 2}
    assert plan.float_posts == {"LayerNorm": 2} and plan.float_matmuls == 0
    assert not plan.posts["encoder.stages.0.0.attn.softmax"].signed  # probabilities
    assert plan.posts["encoder.stages.0.0.mlp.act"].signed  # GELU dips below zero
    assert plan.layers["encoder.stages.0.0.mlp.dwconv"].out_q is not None  # GELU's input
    assert sorted(plan.matmuls) == [f"encoder.stages.{i}.0.attn.{m}"
                                    for i in (0, 1) for m in ("av", "qk")]
    assert plan.feeds["encoder.stages.0.0.mlp.fc2"] == "post:encoder.stages.0.0.mlp.act"
    assert plan.feeds["encoder.stages.0.0.attn.q"] == "post:encoder.stages.0.0.norm1"
    av = plan.matmuls["encoder.stages.0.0.attn.av"]
    assert av.a_q is None and av.b_tie == "out:encoder.stages.0.0.attn.kv"  # attn read raw
    assert isinstance(model.get_submodule("encoder.stages.0.0.attn.qk"), QuantMatMul)
    mode = _Matmuls()
    with torch.no_grad(), mode:
        model(x[:2])
    assert len(mode.operands) == 4  # Q·Kᵀ and attn·V in both blocks, nothing else
    assert float_reads(model, x[:2]) == []


@pytest.mark.parametrize("remove,reported", [
    ("encoder.stages.0.0.norm1", "encoder.stages.0.0.attn.q"),  # LayerNorm's quantizer
    ("encoder.stages.1.0.mlp.act", "encoder.stages.1.0.mlp.fc2"),  # GELU's
    ("encoder.stages.0.0.attn.softmax", "matmul 1 operand a"),  # Softmax's
    ("encoder.stages.0.0.attn.qk", "matmul 0 operand b"),  # K's, at the matmul and the Linear
])
def test_each_missing_quantizer_is_caught(segformer_q, remove, reported):
    """The check above is not vacuous: taking out one quantizer makes it fail there."""
    model, plan, x = segformer_q
    fresh = apply_frozen_structure(_tiny_segformer(), QuantPlan.from_meta(plan.to_meta()))
    fresh.load_state_dict(model.state_dict())
    m = fresh.get_submodule(remove)
    if isinstance(m, PostQuant):
        fresh.set_submodule(remove, m.module)
    else:
        m.b_q = None
        fresh.get_submodule("encoder.stages.0.0.attn.kv").out_q = None
    assert reported in float_reads(fresh.eval(), x[:2])


def test_segformer_plan_reloads_and_onnxruntime_runs_every_matmul_on_integers(segformer_q):
    model, plan, x = segformer_q
    fresh = apply_frozen_structure(_tiny_segformer(), QuantPlan.from_meta(plan.to_meta()))
    fresh.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), model(x))
    ops = count_ops(export_onnx(model, (1, 3, 64, 64)), layout="nchw")
    assert "MatMul" not in ops and "FusedMatMul" not in ops  # no float matmul is left
    assert ops.get("QLinearMatMul", 0) + ops.get("MatMulIntegerToFloat", 0) == 12 + 4


def test_weight_only_plan_quantizes_no_transformer_activation():
    plan = plan_quantization(m := _tiny_segformer(), trace_dataflow(m, torch.randn(1, 3, 64, 64)),
                             QuantConfig(act_bits=32))
    assert not plan.posts and not plan.matmuls and plan.float_matmuls == 4


def test_cnn_plan_meta_has_no_new_keys():
    """A plan without output quantizers or matmuls stores what it always stored, so
    artifacts of CNNs are unchanged; a stored plan without them loads."""
    m = create_model("unet_small", num_classes=3).eval()
    plan = plan_quantization(m, trace_dataflow(m, torch.randn(1, 3, 32, 32)), QuantConfig())
    meta = plan.to_meta()
    assert "posts" not in meta and "matmuls" not in meta
    assert QuantPlan.from_meta(meta).posts == {}


def test_enet_prelu_outputs_get_one_quantizer_the_next_conv_reads():
    m = create_model("enet", num_classes=4).eval()
    plan = plan_quantization(m, trace_dataflow(m, torch.randn(1, 3, 64, 64)), QuantConfig())
    prelus = [n for n, mod in m.named_modules() if isinstance(mod, nn.PReLU)]
    counts = plan.post_counts(m)
    assert set(counts) == {"PReLU"}
    assert counts["PReLU"] + plan.float_posts.get("PReLU", 0) == len(prelus)
    # the PReLU inside each conv-BN-PReLU of a bottleneck's branch feeds the next conv:
    # quantized once, and that conv reads its codes instead of quantizing on its own
    for name in ("net.stage1.0.branch.0.2", "net.stage1.0.branch.1.2", "net.initial.act"):
        assert name in plan.posts and plan.posts[name].signed, name
    assert plan.feeds["net.stage1.0.branch.1.0"] == "post:net.stage1.0.branch.0.2"
    assert plan.layers["net.stage1.0.branch.1.0"].in_q is None
    assert plan.layers["net.stage1.0.branch.0.0"].out_q is not None  # conv stays QLinearConv
    # the branch's last PReLU feeds only the residual add: no integer op reads it, so a
    # quantizer there would only add a QuantizeLinear/DequantizeLinear pair
    assert "net.stage1.0.branch.2.2" not in plan.posts
