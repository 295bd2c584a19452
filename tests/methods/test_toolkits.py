"""The peer-toolkit plugins (nncf_ptq, pt2e_ptq): the artifact is the runtime's own file,
the row runs only in that runtime, and `check` tells a quantized file from a float one.
(Both also run end to end in tests/methods/test_conformance.py.)"""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

from bench.facts import DeployLatency, read
from bench.records import OK
from bench.runner import run_one
from bench.runtimes.base import INT8, RuntimeModule
from methods.nncf_ptq import NncfPTQ
from methods.pt2e_ptq import Pt2ePTQ
from models import create_model

KW = {"base_channels": 4, "depth": 2}


@pytest.fixture(scope="module")
def nncf_run(tmp_path_factory):
    from bench.budgets import get_budget
    from bench.method import expand_methods
    from bench.spec import RunSpec

    results = tmp_path_factory.mktemp("nncf")
    budget = get_budget("smoke", {"train_images": 8, "eval_images": 4, "latency_runs": 3,
                                  "latency_warmup": 0, "batch_size": 4,
                                  "calibration_images": 4})
    (v,) = expand_methods("nncf_ptq", {"calibration_images": 2})
    spec = RunSpec("unet_small", v.spec, v.label, v.resolved(), "synthetic", budget, 0,
                   dict(KW), runtimes=["openvino", "onnxruntime"])
    return results, run_one(spec, results=results, device=torch.device("cpu"))


def test_nncf_artifact_is_the_openvino_ir(nncf_run):
    results, rec = nncf_run
    assert rec["status"] == OK, rec.get("error")
    m = rec["metrics"]
    assert m["runtime"] == "openvino"
    artifact = results / rec["artifact"]
    xml, bin_ = artifact.with_suffix(".xml"), artifact.with_suffix(".bin")
    ir = xml.stat().st_size + bin_.stat().st_size
    # the artifact is the IR's bytes plus segbench's header (a few KB), nothing else
    assert ir <= m["size_bytes"] < ir + 16_384
    assert m["madds"] > 0 and m["params"] > 0  # counted on the zoo network it stands for


def test_nncf_row_runs_only_in_openvino(nncf_run):
    _, rec = nncf_run
    deploy = read(rec, DeployLatency)
    ov = deploy.timings()["openvino"]
    assert ov.precision == INT8 and ov.baseline_precision == "fp32"
    assert ov.reference.startswith("baseline")  # an IR has no PyTorch twin
    assert 0.0 <= ov.agreement <= 1.0
    assert "a file of openvino" in deploy.runtimes["onnxruntime"]["skipped"]


def test_nncf_check_rejects_an_ir_with_nothing_quantized():
    import openvino as ov

    from methods.onnx.export import export_onnx

    tiny = create_model("unet_small", num_classes=3, **KW).eval()
    model = ov.Core().read_model(export_onnx(tiny, (1, 3, 32, 32)), b"")
    with tempfile.TemporaryDirectory() as d:
        ov.save_model(model, os.path.join(d, "m.xml"))
        files = {"xml": open(os.path.join(d, "m.xml"), "rb").read(),
                 "bin": open(os.path.join(d, "m.bin"), "rb").read()}
    assert "no FakeQuantize" in NncfPTQ().file_problems(files)[0]
    assert "does not load" in NncfPTQ().file_problems({"xml": b"<net", "bin": b""})[0]
    float_module = RuntimeModule("openvino", files, "fp32")
    assert "not int8" in NncfPTQ().check(float_module, {})[0]


def test_nncf_full_bias_correction_reaches_nncf(monkeypatch):
    """`--set fast_bias_correction=false` is NNCF's full BiasCorrection (on CamVid U-Net-small
    it kept 51.0 % where the fast default lost 1.7 points: docs/runtimes.md)."""
    import nncf

    from bench.method import expand_methods

    seen = []
    real = nncf.quantize
    monkeypatch.setattr(nncf, "quantize", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    (v,) = expand_methods("nncf_ptq", {"fast_bias_correction": False})
    assert "full-bias-correction" in v.describe()
    method = v.stages()[0].method
    ctx = type("Ctx", (), {"input_shape": (1, 3, 32, 32)})()
    tiny = create_model("unet_small", num_classes=3, **KW).eval()
    files, precision = method.toolkit_compress(ctx, tiny, torch.rand(2, 3, 32, 32))
    assert seen and seen[0]["fast_bias_correction"] is False
    assert precision == INT8 and files["xml"] and files["bin"]


@pytest.mark.parametrize("meta", [
    {"runtime": "openvino", "files": {"pte": 10}, "precision": "int8"},
    {"runtime": "executorch", "files": {"pte": -1}, "precision": "int8"},
    {"runtime": "executorch", "files": "pte", "precision": "int8"},
])
def test_rebuild_refuses_a_header_that_is_not_its_file(meta):
    with pytest.raises(ValueError, match="does not describe a executorch file"):
        Pt2ePTQ().rebuild(create_model("unet_small", num_classes=3, **KW), meta)


def test_pt2e_check_rejects_bytes_that_are_no_program():
    assert "does not load" in Pt2ePTQ().file_problems({"pte": b"not a program"})[0]
