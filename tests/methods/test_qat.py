"""QAT: bit-widths on the shipped weights, bit packing, quantizer placement, the frozen
model against brevitas, and a W4A4 run end to end through the real runner."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from bench.artifact import ArtifactError, Blob, decode_tensor
from bench.config import ConfigError
from bench.export import load_model
from bench.verify import verify_record
from methods.codecs.int_pack import encode_int_tensor, pack_codes, unpack_codes
from methods.quant.brevitas_layers import calibrate, freeze, to_brevitas
from methods.quant.method import MIN_AGREEMENT, TARGET_AGREEMENT
from methods.quant.modules import FROZEN_LAYERS, ActQuant, qrange
from methods.quant.plan import (
    QuantConfig,
    QuantPlan,
    UnsupportedModelError,
    apply_frozen_structure,
    fold_batchnorms,
    plan_quantization,
)
from methods.quant.trace import trace_dataflow


class Tiny(nn.Module):
    """conv-BN-ReLU, max-pool, conv-BN-PReLU, a residual add, a classifier conv."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1, self.r1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), \
            nn.BatchNorm2d(8), nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.c2, self.b2, self.p2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), \
            nn.PReLU(8)
        self.head = nn.Conv2d(8, 5, 1)

    def forward(self, x):
        x = self.pool(self.r1(self.b1(self.c1(x))))
        x = x + self.p2(self.b2(self.c2(x)))
        return nn.functional.interpolate(self.head(x), scale_factor=2.0)


def _trained_tiny(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    m = Tiny()
    for bn in (m.b1, m.b2):  # non-trivial statistics so folding is tested for real
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


# -- packing ------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", range(2, 9))
def test_pack_roundtrip_uses_exactly_bits_per_code(bits):
    lo, hi = qrange(bits, signed=True)
    codes = np.random.default_rng(bits).integers(lo, hi + 1, size=1001)
    data = pack_codes(codes, bits, lo)
    assert len(data) == (1001 * bits + 7) // 8
    assert np.array_equal(unpack_codes(data, 1001, bits, lo), codes)


def test_two_4bit_codes_share_one_byte():
    assert pack_codes(np.array([-8, 7]), 4, -8) == bytes([0xF0])  # LSB first: 0, then 15


def test_pack_rejects_codes_outside_the_bit_width():
    with pytest.raises(ValueError, match="4-bit range"):
        pack_codes(np.array([0, 8]), 4, -8)


def test_truncated_packed_blob_does_not_decode():
    et = encode_int_tensor(torch.randint(-8, 8, (4, 3), dtype=torch.int8), 4, -8)
    assert torch.equal(decode_tensor(et), decode_tensor(copy.deepcopy(et)))
    et.blobs["codes"] = Blob(et.blobs["codes"].data[:-1])
    with pytest.raises(ArtifactError, match="need 6 bytes"):
        decode_tensor(et)


# -- placement ----------------------------------------------------------------------------

def _plan(model, **cfg) -> QuantPlan:
    return plan_quantization(model, trace_dataflow(model, torch.randn(1, 3, 16, 16)),
                             QuantConfig(**cfg))


def test_plan_folds_batchnorms_and_places_quantizers_where_onnxruntime_fuses():
    plan = _plan(_trained_tiny(), weight_bits=4, act_bits=4)
    assert plan.folds == [("c1", "b1"), ("c2", "b2")]
    assert set(plan.acts) == {"r1"} and not plan.acts["r1"].signed  # ReLU -> unsigned quant
    c1, c2, head = plan.layers["c1"], plan.layers["c2"], plan.layers["head"]
    assert c1.in_q.bits == 8 and c1.w_bits == 8  # first layer: first_last_bits
    assert c1.out_q is None  # quantized after its ReLU instead
    assert plan.ties == {"c2": "act:r1"}  # max-pool keeps the ReLU's grid
    assert c2.out_q.signed and c2.out_q.bits == 4  # PReLU follows: quantize at the conv
    assert head.out_q is None and head.w_bits == 8  # logits (through the resize) stay float
    assert head.in_q is not None and head.in_q.signed  # the residual add is float


def test_weight_only_plan_has_no_activation_quantizers():
    plan = _plan(_trained_tiny(), act_bits=32)
    assert not plan.acts and all(s.in_q is None and s.out_q is None
                                 for s in plan.layers.values())


def test_shared_layers_are_refused_with_a_reason():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.c(self.c(x))

    with pytest.raises(UnsupportedModelError, match="runs 2 times"):
        _plan(Shared())


@pytest.mark.parametrize("cfg,match", [({"weight_bits": 9}, "one of 2, 3, 4, 5, 6, 7, 8, auto"),
                                       ({"act_bits": 3}, "one of 4, 5, 6, 7, 8, 32"),
                                       ({"first_last_bits": 1}, r"\[2, 8\]")])
def test_bad_bit_widths_name_the_valid_range(make_spec, cfg, match):
    with pytest.raises(ConfigError, match=match):
        make_spec("qat", "unet_small", **cfg)


def test_folding_keeps_the_function():
    m = _trained_tiny()
    x = torch.randn(2, 3, 16, 16)
    ref = m(x)
    fold_batchnorms(m, _plan(m).folds)
    assert isinstance(m.b1, nn.Identity) and m.c1.bias is not None
    torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-5)


# -- brevitas -> frozen --------------------------------------------------------------------

def test_frozen_model_computes_what_brevitas_computes_and_reloads_from_the_plan():
    torch.manual_seed(0)
    m = _trained_tiny()
    x = torch.randn(8, 3, 16, 16)
    plan = _plan(m, weight_bits=4, act_bits=4)
    fold_batchnorms(m, plan.folds)
    to_brevitas(m, plan)
    calibrate(m, x, 4, torch.device("cpu"))
    with torch.no_grad():
        ref = m(x)
    freeze(m, plan)
    with torch.no_grad():
        out = m(x)
    # the same numbers, but for biases put on the integer kernels' grid (input scale x
    # weight scale) and float64 sums: a rare code may round the other way
    assert (out.argmax(1) == ref.argmax(1)).float().mean() > 0.99
    assert (out - ref).abs().mean() < 0.01 * ref.abs().mean()
    step = m.c2.in_q.scale * m.c2.weight_scale
    assert torch.allclose(m.c2.bias / step, torch.round(m.c2.bias / step), atol=1e-3)
    for layer in (mod for mod in m.modules() if isinstance(mod, FROZEN_LAYERS)):
        assert layer.weight_int.dtype == torch.int8
        lo, hi = qrange(layer.w_bits, True)
        assert lo <= int(layer.weight_int.min()) and int(layer.weight_int.max()) <= hi
    assert isinstance(m.r1, ActQuant)
    fresh = apply_frozen_structure(Tiny(), QuantPlan.from_meta(plan.to_meta()))
    fresh.load_state_dict(m.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), out)


def _brevitas_tiny(weight_bits: int, act_bits: int, x: torch.Tensor):
    m = _trained_tiny()
    plan = _plan(m, weight_bits=weight_bits, act_bits=act_bits)
    fold_batchnorms(m, plan.folds)
    to_brevitas(m, plan)
    calibrate(m, x, 4, torch.device("cpu"))
    return m, plan


def test_qat_training_step_moves_weights_and_learned_scales():
    """Straight-through gradients reach the float weights and the 4-bit scales."""
    x = torch.randn(8, 3, 16, 16)
    m, _ = _brevitas_tiny(4, 4, x)
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    target = torch.randint(0, 5, (8, 16, 16))
    nn.functional.cross_entropy(m(x), target).backward()
    opt.step()
    after = dict(m.named_parameters())
    moved = {k for k, v in before.items() if not torch.equal(v, after[k])}
    assert any(k.endswith("scaling_impl.value") and "weight_quant" in k for k in moved)
    assert any(k.endswith("scaling_impl.value") and "act_quant" in k for k in moved)
    assert "c2.weight" in moved


@pytest.mark.parametrize("bits", [2, 4])
def test_exported_onnx_weights_hold_the_bit_width_per_channel(bits):
    from methods.onnx.export import export_onnx

    x = torch.randn(8, 3, 16, 16)
    m, plan = _brevitas_tiny(bits, 8, x)
    freeze(m, plan)
    graph = onnx.load_from_string(export_onnx(m, (1, 3, 16, 16))).graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    dq_weights = [n.input[0] for n in graph.node
                  if n.op_type == "DequantizeLinear" and n.input[0].endswith(".weight_int")]
    assert sorted(dq_weights) == ["c1.weight_int", "c2.weight_int", "head.weight_int"]
    w = inits["c2.weight_int"]  # the middle layer: first/last are widened to 8 bits
    assert w.dtype == np.int8
    assert max(len(np.unique(row)) for row in w.reshape(w.shape[0], -1)) <= 2**bits
    lo, hi = qrange(bits, True)
    assert lo <= w.min() and w.max() <= hi


# -- end to end ---------------------------------------------------------------------------

@pytest.mark.slow
def test_qat_w4a4_end_to_end_bit_widths_hold_on_artifact_and_onnx(make_spec, run_spec,
                                                                  results):
    rec = run_spec(make_spec("qat", "unet_small", weight_bits=4, act_bits=4))
    assert rec["status"] == "ok", rec.get("error")
    assert rec["metrics"]["runtime"] == "onnxruntime"
    # W4A4 rounds a rare activation code differently in the integer kernels (the method's
    # TARGET_AGREEMENT note); on a barely trained model margins are thin, so the shipped
    # graph is held to the harness's failure floor and the target flag must tell the truth
    agree = rec["extras"]["ort_argmax_agreement"]
    assert agree >= MIN_AGREEMENT
    assert rec["extras"]["ort_agreement_target_met"] == (agree >= TARGET_AGREEMENT)
    path = results / rec["artifact"]
    model, header, stages = load_model(path)
    meta = header["stages"][0]["meta"]
    assert stages[0].method.check(model, meta) == []
    bits = {k: v["w_bits"] for k, v in meta["plan"]["layers"].items()}
    assert sorted(set(bits.values())) == [4, 8]  # first/last layers stay at 8
    # 4-bit weights pack two to a byte: the artifact is far below int8 storage
    int8_bytes = sum(m.weight_int.numel() for m in model.modules()
                     if isinstance(m, FROZEN_LAYERS))
    assert rec["metrics"]["size_bytes"] < 0.7 * int8_bytes
    # the shipped ONNX graph's integer weights: at most 2**bits values per channel
    graph = onnx.load(str(path.with_suffix(".onnx"))).graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    checked = 0
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or not node.input[0].endswith(".weight_int"):
            continue
        w = inits[node.input[0]]
        assert w.dtype == np.int8
        per_channel = w.reshape(w.shape[0], -1)
        assert max(len(np.unique(r)) for r in per_channel) <= 2 ** bits[node.input[0][:-11]]
        checked += 1
    assert checked == sum(1 for m in model.modules()  # all but transposed convs (float)
                          if isinstance(m, FROZEN_LAYERS) and m.export_int_weight)
    assert verify_record(rec, results) == []
