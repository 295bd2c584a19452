"""Each deployment runtime exports a tiny U-Net, runs it and agrees with PyTorch; the
`runtimes` setting is validated, keeps existing run ids, and a missing runtime package is
one line naming the extra to install."""

from __future__ import annotations

import importlib

import pytest
import torch

from bench.cli import main
from bench.registry import UnknownNameError
from bench.runtimes import EXTRA, MissingRuntime, get_runtime, parse_runtimes
from bench.runtimes.base import FP32, INT8, RuntimeModule, complexity_model
from bench.runtimes.deploy import argmax_agreement, skip_reason
from models import create_model

SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("unet_small", num_classes=5, base_channels=4, depth=2).eval()


@pytest.mark.parametrize("name", ["torch", "onnxruntime", "openvino"])
def test_runtime_exports_runs_and_agrees(name, tiny):
    compiled = get_runtime(name).compile(tiny, SHAPE)
    x = torch.randn(3, *SHAPE[1:], generator=torch.Generator().manual_seed(1))
    out = compiled.predict(x)
    with torch.no_grad():
        ref = tiny(x)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-4)
    assert argmax_agreement(tiny, compiled.predict, x) == 1.0
    assert compiled.precision == FP32


@pytest.mark.slow
def test_executorch_exports_runs_and_agrees(tiny):
    """The XNNPACK lowering of a tiny U-Net (the slowest export: 30-60 s cold on 2 cores;
    the pt2e_ptq conformance run covers the same path, float and int8, in the default
    suite)."""
    compiled = get_runtime("executorch").compile(tiny, SHAPE)
    x = torch.randn(2, *SHAPE[1:], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = tiny(x)
    assert torch.allclose(compiled.predict(x), ref, atol=1e-4)
    assert compiled.precision == FP32
    assert compiled.detail["pte_bytes"] > 0


def test_runtime_module_holds_a_file_as_its_state(tiny):
    """A runtime's own file as a model: the bytes are the state, so they round-trip through
    a state dict, and MAdds are counted on the zoo network it stands for."""
    from methods.onnx.export import export_onnx

    data = export_onnx(tiny, SHAPE)
    m = RuntimeModule("onnxruntime", {"onnx": data}, FP32, structure=tiny)
    fresh = RuntimeModule("onnxruntime", m.sizes(), FP32)
    fresh.load_state_dict(m.state_dict(), strict=True)
    assert fresh.files() == {"onnx": data}
    assert complexity_model(m) is tiny and complexity_model(tiny) is tiny
    x = torch.randn(*SHAPE)
    assert torch.allclose(fresh(x), tiny(x), atol=1e-4)


def test_skip_reasons_follow_what_the_row_is(tiny):
    m = RuntimeModule("openvino", {"xml": b"x", "bin": b"y"}, INT8)
    assert "a file of openvino" in skip_reason(m, "openvino", "executorch")
    assert skip_reason(m, "openvino", "openvino") is None
    assert skip_reason(tiny, "torch", "executorch") is None  # a float row goes everywhere
    assert "float emulation" in skip_reason(tiny, "onnxruntime", "torch")
    assert skip_reason(tiny, "onnxruntime", "openvino") is None  # reads the QDQ graph


def test_parse_runtimes():
    assert parse_runtimes(None) == [] and parse_runtimes("") == []
    assert parse_runtimes("torch, onnxruntime,torch") == ["torch", "onnxruntime"]
    assert parse_runtimes(["openvino"]) == ["openvino"]
    with pytest.raises(UnknownNameError, match="unknown runtime 'tflite'; valid: torch"):
        parse_runtimes("torch,tflite")
    with pytest.raises(UnknownNameError, match="comma list"):
        parse_runtimes(3)


def _without(package: str, monkeypatch) -> None:
    real = importlib.import_module

    def fake(name, *a, **k):
        if name == package or name.startswith(package + "."):
            raise ModuleNotFoundError(f"No module named {package!r}", name=package)
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake)


def test_missing_runtime_package_is_one_line_naming_the_extra(monkeypatch, capsys, tmp_path):
    _without("openvino", monkeypatch)
    with pytest.raises(MissingRuntime, match=rf"segbench\[{EXTRA}\]"):
        get_runtime("openvino")
    rc = main(["run", "--method", "none", "--model", "unet_small", "--budget", "smoke",
               "--set", "runtimes=torch,openvino", "--dry-run",
               "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "runtime 'openvino' needs the 'openvino' package" in err[0]
    assert f"pip install 'segbench[{EXTRA}]'" in err[0]


def test_unknown_runtime_exits_2(capsys, tmp_path):
    rc = main(["run", "--method", "none", "--model", "unet_small", "--budget", "smoke",
               "--set", "runtimes=tflite", "--dry-run", "--results", str(tmp_path / "r")])
    assert rc == 2
    assert "unknown runtime 'tflite'" in capsys.readouterr().err


def test_runtimes_enter_the_run_id_only_when_set(make_spec):
    plain = make_spec("none", model="unet_small")
    assert "runtimes" not in plain.identity()  # runs recorded before the setting keep ids
    timed = make_spec("none", model="unet_small")
    timed.runtimes = ["torch", "onnxruntime"]
    assert timed.run_id != plain.run_id
    assert timed.baseline_spec().runtimes == ["torch", "onnxruntime"]
