"""PTQ: deterministic calibration, a W8A8 run end to end through the real runner (integer
ONNX graph, onnxruntime latency against the float baseline, reload and verify), and every
zoo model either quantizing or failing with a clear message."""

from __future__ import annotations

import pytest
import torch

from bench.export import load_model
from bench.method import stages_from_record
from bench.verify import verify_record
from methods.onnx.runtime import OrtPredictor
from methods.quant.modules import FROZEN_LAYERS, FrozenConv2d, FrozenConvTranspose2d
from models import list_models


def _ptq(ctx, model):
    method = stages_from_record(ctx.spec.stages)[0].method
    model = method.compress(ctx, model)
    method._time_against_float = lambda ctx, model: None  # skip the onnxruntime timing
    return method.finalize(ctx, model)


class Small(torch.nn.Module):
    """A conv-BN-ReLU pair and a classifier: cheap enough to calibrate twice."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1),
                                        torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.PReLU(8))
        self.head = torch.nn.Conv2d(8, 9, 1)

    def forward(self, x):
        return self.head(self.body(x))


def _small() -> Small:
    torch.manual_seed(0)
    return Small().eval()


def test_ptq_calibration_is_deterministic(make_ctx):
    ctx = make_ctx("ptq", "unet_small")
    a = _ptq(ctx, _small()).state_dict()
    b = _ptq(ctx, _small()).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    scales = [k for k in a if k.endswith(".scale")]
    assert len(scales) == 4  # input, after the ReLU, the conv before the PReLU, head input
    assert all(float(a[k]) > 0 for k in scales)
    # calibration reads the images: other images, other scales
    c = _ptq(make_ctx("ptq", "unet_small", calibration_images=2), _small()).state_dict()
    assert any(not torch.equal(a[k], c[k]) for k in scales)


def test_ptq_w8a8_end_to_end(make_spec, run_spec, results, monkeypatch):
    import bench.runner

    timed = []
    paired = bench.runner.measure_paired
    monkeypatch.setattr(bench.runner, "measure_paired",
                        lambda p, b, *a, **k: timed.append((p, b)) or paired(p, b, *a, **k))
    rec = run_spec(make_spec("ptq", "unet_small"))
    assert rec["status"] == "ok", rec.get("error")
    m, x = rec["metrics"], rec["extras"]
    assert m["runtime"] == "onnxruntime"
    # after onnxruntime's optimisation every conv is an integer kernel except the
    # classifier, whose logits stay float (transposed convs have no integer kernel)
    model, header, stages = load_model(results / rec["artifact"])
    convs = [m for m in model.modules() if isinstance(m, FrozenConv2d)]
    assert x["ort_integer_ops"]["QLinearConv"] == len(convs) - 1
    assert x["ort_float_convs"] == 1 + sum(isinstance(m, FrozenConvTranspose2d)
                                           for m in model.modules())
    assert x["ort_argmax_agreement"] >= 0.99
    # timed like for like: paired with the float baseline in onnxruntime, not eager torch
    ((row, base),) = timed
    assert isinstance(row, OrtPredictor) and isinstance(base, OrtPredictor)
    assert m["latency_paired"] and m["baseline_latency_ms"] > 0 and m["speedup"] > 0
    assert x["ort_layout"] in ("nhwc", "nchw")
    # int8 weights: about a quarter of the float artifact, and it reloads exactly
    assert 3.0 < m["compression_ratio"] < 4.1
    assert stages[0].method.check(model, header["stages"][0]["meta"]) == []
    assert all(layer.w_bits == 8 for layer in model.modules() if isinstance(layer, FROZEN_LAYERS))
    assert verify_record(rec, results) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_quantizes_or_fails_clearly(name, make_ctx):
    """W8A8 PTQ at 64x64 on random weights: the ONNX model must match PyTorch's."""
    from methods.onnx.runtime import OrtPredictor, argmax_agreement
    from methods.quant.plan import UnsupportedModelError

    torch.manual_seed(0)
    ctx = make_ctx("ptq", name, calibration_images=2)
    full = ctx.calibration_images
    ctx.calibration_images = lambda n=None: full(n)[:, :, :64, :64]  # keeps big models cheap
    try:
        model = _ptq(ctx, ctx.build_model())
    except UnsupportedModelError as e:
        assert name in str(e) or "layer" in str(e)  # names what it cannot handle
        pytest.skip(f"{name}: {e}")
    x = ctx.calibration_images(2)
    agree = argmax_agreement(model, OrtPredictor(model, 1), x)
    assert agree >= 0.95, f"{name}: onnxruntime agrees on {agree:.1%} of pixels"
