"""`python -m bench.runtimes.openvino_profile`: OpenVINO's per-layer counters, by layer
type and kernel (the kernel names the precision), and one-line errors for bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("openvino")


class PoolPReLU(nn.Module):
    """ENet's pattern in small: conv, PReLU, max-pool keeping indices, unpool."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.PReLU(8)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)

    def forward(self, x):
        y, idx = self.pool(self.act(self.conv(x)))
        return self.unpool(y, idx)


def test_profile_counts_every_layer_and_finds_no_reference_kernel():
    from bench.runtimes.openvino_cpu import openvino_model
    from bench.runtimes.openvino_profile import layer_profile, render

    shape = (1, 3, 16, 16)
    prof = layer_profile(openvino_model(PoolPReLU().eval(), shape), shape, runs=2)
    assert any(t == "Convolution" for t, _ in prof) and all(v["ms"] >= 0 for v in prof.values())
    # the PReLU runs fused into the convolution; the pool's indices in no reference kernel
    assert not [k for k in prof if k[0] in ("PRelu", "Reference")], prof
    assert "| total" in render(prof)


@pytest.mark.parametrize("args", [["/no/such/model.safetensors"],
                                  ["{f}", "--size", "180"], ["{f}", "--runs", "0"], ["{f}"]])
def test_bad_input_is_one_line_and_exit_2(args, tmp_path, capsys):
    from bench.runtimes.openvino_profile import main

    f = tmp_path / "model.safetensors"
    f.write_bytes(b"not an artifact")
    assert main([a.format(f=f) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("segbench: error:")


def test_openvino_model_is_what_the_runtime_compiles():
    from bench.runtimes.openvino_cpu import RUNTIME

    m = PoolPReLU().eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(RUNTIME.compile(m, (1, 3, 16, 16)).predict(x), m(x),
                                   atol=1e-5, rtol=1e-5)
