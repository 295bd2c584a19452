"""FTZ/DAZ: a denormal operand reads as zero once segbench has started (bench/numerics.py)."""

import platform

import pytest
import torch

from bench.cli import main
from bench.numerics import flush_denormals

DENORMAL = 1e-39  # below float32's smallest normal, 1.18e-38


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 FTZ/DAZ")
def test_denormal_operands_are_flushed_once_segbench_starts():
    main(["list"])  # any command sets it first
    assert flush_denormals() is True
    x = torch.tensor([DENORMAL], dtype=torch.float32)
    assert (x * 1.0).item() == 0.0  # DAZ: the denormal input is read as zero


def test_every_run_records_it(make_spec, run_spec):
    rec = run_spec(make_spec("none", "unet_small"))
    assert rec["env"]["flush_denormal"] is flush_denormals()
