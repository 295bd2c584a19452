"""The per-operator onnxruntime profile that docs/runtimes.md's ENet table comes from."""

from __future__ import annotations

from torch import nn

from bench.runtimes.profile import main, op_profile, render
from methods.onnx.export import export_onnx


def test_profile_attributes_time_to_the_graph_operators(tmp_path, capsys):
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    data = export_onnx(m, (1, 3, 16, 16))
    prof = op_profile(data, (1, 3, 16, 16), runs=4)
    assert "Conv" in prof and prof["Conv"]["nodes"] >= 1
    assert all(v["ms"] >= 0 for v in prof.values()) and prof["Conv"]["ms"] > 0
    assert "| total" in render(prof)
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    assert main([str(path), "--runs", "2"]) == 0
    assert "| Conv" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.onnx")]) == 2
