"""The onnxruntime predictor the harness evaluates and times: any batch and image size,
layouts that never change predictions, paired latency, the agreement measure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from methods.onnx.export import export_onnx
from methods.onnx.runtime import (
    OrtPredictor,
    argmax_agreement,
    make_session,
    paired_latency,
    tuned_session,
)
from methods.quant.modules import ActQuant, ActSpec


def _net() -> nn.Module:
    torch.manual_seed(0)
    q = ActQuant(ActSpec(8, True))
    q.scale.fill_(0.05)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), q, nn.Conv2d(8, 4, 1)).eval()


def test_predictor_runs_any_batch_and_size_like_pytorch():
    m = _net()
    p = OrtPredictor(m, threads=1)
    for shape in [(3, 3, 16, 16), (1, 3, 9, 13), (2, 3, 16, 16)]:
        x = torch.randn(*shape)
        out = p(x)
        assert isinstance(out, torch.Tensor) and out.shape == (shape[0], 4, *shape[2:])
        with torch.no_grad():
            torch.testing.assert_close(out, m(x), atol=1e-4, rtol=1e-4)
    assert set(p.sessions) == {(16, 16), (9, 13)}  # one export per image size


def test_layouts_give_identical_outputs_and_bad_layout_is_named():
    data = export_onnx(_net(), (1, 3, 16, 16))
    x = torch.randn(2, 3, 16, 16).numpy()
    a = make_session(data, 1, "nhwc").run(None, {"images": x})[0]
    b = make_session(data, 1, "nchw").run(None, {"images": x})[0]
    assert (a == b).all()
    sess, layout = tuned_session(data, (1, 3, 16, 16), 1, "auto")
    assert layout in ("nhwc", "nchw") and (sess.run(None, {"images": x})[0] == a).all()
    with pytest.raises(ValueError, match="auto, nhwc, nchw"):
        tuned_session(data, (1, 3, 16, 16), 1, "nhcw")


def test_paired_latency_and_agreement():
    m = _net()
    lat = paired_latency({"torch": m, "ort": OrtPredictor(m, 1)}, (1, 3, 16, 16),
                         runs=3, warmup=1)
    assert set(lat) == {"torch", "ort"}
    assert all(v["median_ms"] > 0 and v["iqr_ms"] >= 0 for v in lat.values())
    x = torch.randn(4, 3, 16, 16)
    assert argmax_agreement(m, m, x) == 1.0
    assert argmax_agreement(m, lambda t: -m(t), x) < 0.5
