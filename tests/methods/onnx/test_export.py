"""The ONNX export: exact unpooling, int8 weight initializers with QDQ pairs that
onnxruntime turns into integer convolutions (sub-8-bit activations included), and graphs
that compute what PyTorch computes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods.onnx.export import (
    MatmulAdaptiveAvgPool2d,
    ScatterMaxUnpool2d,
    SlicedMaxPool2d,
    export_onnx,
    exportable,
)
from methods.onnx.runtime import count_ops, make_session
from methods.quant.modules import ActQuant, ActSpec, FrozenConv2d, LayerSpec


def test_scatter_unpool_equals_max_unpool():
    x = torch.randn(2, 4, 8, 10)
    pooled, idx = F.max_pool2d(x, 2, return_indices=True)
    ref = nn.MaxUnpool2d(2)
    assert torch.equal(ScatterMaxUnpool2d(ref)(pooled, idx), ref(pooled, idx))
    assert torch.equal(ScatterMaxUnpool2d(ref)(pooled, idx, output_size=[8, 10]),
                       ref(pooled, idx, output_size=[8, 10]))


def test_exportable_swaps_unpooling_only_while_exporting():
    m = nn.Sequential(nn.MaxUnpool2d(2))
    with exportable(m):
        assert isinstance(m[0], ScatterMaxUnpool2d)
    assert type(m[0]) is nn.MaxUnpool2d


class PoolUnpool(nn.Module):
    """ENet's pattern: max-pool keeping indices, a conv, max-unpool with those indices."""

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.conv = nn.Conv2d(4, 4, 1)
        self.unpool = nn.MaxUnpool2d(2)

    def forward(self, x):
        y, idx = self.pool(x)
        return self.unpool(self.conv(y), idx) + x


def test_pool_unpool_export_matches_pytorch_at_any_batch():
    torch.manual_seed(0)
    m = PoolUnpool().eval()
    x = torch.randn(3, 4, 8, 12)
    sess = make_session(export_onnx(m, (1, 4, 8, 12)), threads=1)
    out = sess.run(None, {"images": x.numpy()})[0]  # batch 3 through a batch-1 export
    with torch.no_grad():
        np.testing.assert_allclose(out, m(x).numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [2, 4, (3, None), (5, 7)])
def test_matmul_adaptive_pool_equals_adaptive_avg_pool(size):
    pool = nn.AdaptiveAvgPool2d(size)
    for hw in [(12, 15), (2, 3), (4, 4), (13, 17)]:
        x = torch.randn(2, 3, *hw)
        torch.testing.assert_close(MatmulAdaptiveAvgPool2d(pool)(x), pool(x))


def test_pp_liteseg_exports_where_its_pyramid_bins_do_not_divide_the_map():
    """PP-LiteSeg-T's 2x2 and 4x4 pooling bins on a 2x3 stride-32 map (64x96 input; 12x15
    at CamVid's 360x480): torch's exporter refuses adaptive pooling to a non-divisor,
    which failed ptq/qat's ONNX export of pp_liteseg_t on CamVid."""
    from models import create_model

    torch.manual_seed(0)
    m = create_model("pp_liteseg_t", num_classes=5).eval()
    x = torch.randn(2, 3, 64, 96)
    sess = make_session(export_onnx(m, (1, 3, 64, 96)), threads=1)
    out = sess.run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, m(x).numpy(), atol=1e-4, rtol=1e-4)
    assert any(isinstance(p, nn.AdaptiveAvgPool2d) for p in m.modules())  # restored


@pytest.mark.slow
def test_enet_float_export_matches_pytorch():
    from models import create_model

    torch.manual_seed(0)
    m = create_model("enet", num_classes=5).eval()
    x = torch.randn(2, 3, 32, 48)
    sess = make_session(export_onnx(m, (1, 3, 32, 48)), threads=1)
    out = sess.run(None, {"images": x.numpy()})[0]  # batch 2 through a batch-1 export
    with torch.no_grad():
        np.testing.assert_allclose(out, m(x).numpy(), atol=1e-4, rtol=1e-4)


def _qconv(cin: int, cout: int, in_q: ActSpec | None, out_q: ActSpec | None) -> FrozenConv2d:
    conv = FrozenConv2d(nn.Conv2d(cin, cout, 3, padding=1), LayerSpec(8, True, in_q, out_q))
    with torch.no_grad():
        conv.weight_int.copy_(torch.randint(-127, 128, conv.weight_int.shape))
        conv.weight_scale.copy_(torch.rand(cout) * 0.01 + 0.001)
        conv.bias.uniform_(-0.1, 0.1)
        for q in (conv.in_q, conv.out_q):
            if q is not None:
                q.scale.fill_(0.05)
    return conv


@pytest.mark.parametrize("act_bits", [8, 4])
def test_quantized_convs_become_integer_kernels_and_match_pytorch(act_bits):
    a = ActSpec(act_bits, True)
    relu = ActQuant(ActSpec(act_bits, False))  # a ReLU with its quantizer
    relu.scale.fill_(0.03)
    m = nn.Sequential(_qconv(3, 16, a, None), relu, _qconv(16, 16, None, a),
                      _qconv(16, 4, None, None)).eval()
    data = export_onnx(m, (1, 3, 16, 16))
    graph = onnx.load_from_string(data).graph
    assert [i.name for i in graph.input] == ["images"]  # weights are initializers, not inputs
    int8 = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.INT8}
    assert {f"{k}.weight_int" for k in "023"} <= int8
    if act_bits < 8:  # narrow codes are clipped in the integer domain
        assert any(n.op_type == "Clip" for n in graph.node)
    ops = count_ops(data)
    assert ops.get("QLinearConv") == 2 and ops.get("Conv") == 1  # last conv: float logits
    x = torch.randn(4, 3, 16, 16)
    out = make_session(data, threads=1).run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        ref = m(x).numpy()
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.99
    # on a quantizer's grid: integer and float arithmetic may round a code differently,
    # rarely, and by a step or two once it propagates
    sub = m[:3]
    step = float(sub[2].out_q.scale)
    grid = make_session(export_onnx(sub, (1, 3, 16, 16)), threads=1).run(
        None, {"images": x.numpy()})[0]
    with torch.no_grad():
        diff = np.abs(grid - sub(x).numpy()) / step
    assert (diff < 1e-3).mean() > 0.95 and diff.max() < 2.5


@pytest.mark.parametrize("channels", [1, 6])
def test_decomposed_prelu_is_prelu_bit_for_bit(channels):
    from methods.onnx.export import DecomposedPReLU

    p = nn.PReLU(channels)
    with torch.no_grad():
        p.weight.uniform_(-0.5, 0.5)
    x = torch.randn(2, 6, 5, 7)
    x[0, 0, 0, :3] = torch.tensor([0.0, -0.0, 1e-30])
    assert torch.equal(DecomposedPReLU(p)(x), p(x))


def test_prelu_is_exported_decomposed_unless_asked_and_computes_the_same():
    """onnxruntime's PRelu kernel is slow (docs/runtimes.md): the export writes Relu, Min,
    Mul, Add by default, with the same outputs, and keeps PRelu on request."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.PReLU(8)).eval()
    with torch.no_grad():
        m[1].weight.uniform_(0.0, 0.5)
    shape = (1, 3, 8, 8)
    ops = count_ops(export_onnx(m, shape), optimized=False)
    assert "PRelu" not in ops and {"Relu", "Min", "Mul", "Add"} <= set(ops)
    assert "PRelu" in count_ops(export_onnx(m, shape, decompose_prelu=False), optimized=False)
    x = torch.randn(*shape)
    out = make_session(export_onnx(m, shape), threads=1).run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, m(x).numpy(), atol=1e-6, rtol=1e-6)
    with exportable(m):
        assert type(m[1]) is nn.PReLU  # decomposed only for the ONNX export


@pytest.mark.parametrize("hw", [(8, 12), (7, 9), (2, 2), (6, 5)])
def test_sliced_pool_gives_pytorchs_maxima_and_indices_ties_included(hw):
    """Equal values in a window (a ReLU's zeros, int8 activations) must pick the index
    PyTorch picks, the first in row-major order, or the unpooling puts values elsewhere."""
    torch.manual_seed(0)
    pool = nn.MaxPool2d(2, return_indices=True)
    for x in (torch.randn(2, 3, *hw), torch.randint(0, 2, (2, 3, *hw)).float(),
              torch.zeros(1, 2, *hw)):
        values, idx = pool(x)
        sliced_values, sliced_idx = SlicedMaxPool2d()(x)
        assert torch.equal(sliced_values, values) and torch.equal(sliced_idx, idx)


def test_sliced_pool_export_matches_pytorch_and_only_replaces_2x2_pools():
    torch.manual_seed(0)
    m = PoolUnpool().eval()
    shape = (1, 4, 8, 12)
    data = export_onnx(m, shape, slice_pool_indices=True)
    assert "MaxPool" not in count_ops(data, optimized=False)
    assert "MaxPool" in count_ops(export_onnx(m, shape), optimized=False)  # default: native
    x = torch.randint(0, 3, (3, 4, 8, 12)).float()  # ties in most windows, batch 3
    out = make_session(data, threads=1).run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_array_equal(out, m(x).numpy())
    others = nn.Sequential(nn.MaxPool2d(3, 2, return_indices=True),
                           nn.MaxPool2d(2, 2, padding=1, return_indices=True),
                           nn.MaxPool2d(2, 2))
    with exportable(others, slice_pool_indices=True):
        assert all(type(p) is nn.MaxPool2d for p in others)
    with exportable(m, slice_pool_indices=True):
        assert isinstance(m.pool, SlicedMaxPool2d)
    assert type(m.pool) is nn.MaxPool2d
