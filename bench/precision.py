"""How the shared training loop computes: the number format of the forward pass and the
memory layout of activations and weights (`train.precision`, `train.channels_last`).

Both change the arithmetic a little, so both are recorded in the training config and so
in every run id; at their defaults (fp32, contiguous) they leave existing run ids as they
were. On the CPU, `bf16` runs the forward pass under bfloat16 autocast (weights and the
optimizer stay fp32; oneDNN has bf16 convolution kernels on AVX512 CPUs and newer, native
with AVX512-BF16 or AMX: without those it emulates bf16, and on the 2-core AVX512 development
machine a U-Net-small training step then ran at 0.53-0.67x fp32's speed, see
tests/perf/test_train_precision.py); bfloat16 has fp32's exponent range, so no loss
scaling is needed.
On CUDA, `fp32` keeps the long-standing behaviour of `train.amp` (fp16 autocast with a
gradient scaler when true) and `bf16` autocasts to bfloat16 there too. `channels_last`
stores 4-D weights and images NHWC, the layout oneDNN's and cuDNN's fastest convolutions
use; the model is returned to the contiguous layout after training, so what is saved and
exported is the same either way.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16")


def cpu_bf16_supported() -> bool:
    """Whether this CPU has bf16 convolution kernels (oneDNN: AVX512 core or newer)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_bf16_native() -> bool:
    """AVX512-BF16 or AMX: bf16 dot products in hardware (else oneDNN converts in
    registers, which still halves the memory traffic)."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)


class TrainingPrecision:
    """The autocast, gradient scaler and memory layout one training call uses."""

    def __init__(self, precision: str, channels_last: bool, amp: bool,
                 device: torch.device):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown train.precision {precision!r}; valid: "
                             f"{', '.join(PRECISIONS)}")
        if precision == "bf16" and device.type == "cpu" and not cpu_bf16_supported():
            raise RuntimeError(
                f"train.precision=bf16 needs a CPU with bf16 kernels (AVX512 or newer); this "
                f"one reports {torch.backends.cpu.get_cpu_capability()}: use "
                f"train.precision=fp32")
        if precision == "bf16" and device.type == "cpu" and not cpu_bf16_native():
            warnings.warn("train.precision=bf16 on a CPU without AVX512-BF16 or AMX: oneDNN "
                          "emulates bf16 and can train slower than fp32 (`make perf` "
                          "measures it)", stacklevel=2)
        self.device = device
        self.dtype: torch.dtype | None = None
        if precision == "bf16":
            self.dtype = torch.bfloat16
        elif amp and device.type == "cuda":
            self.dtype = torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype is torch.float16)
        self.memory_format = torch.channels_last if channels_last else None

    def describe(self) -> dict:
        return {"autocast": str(self.dtype).removeprefix("torch.") if self.dtype else "off",
                "channels_last": self.memory_format is not None}

    def prepare(self, model: nn.Module) -> nn.Module:
        return model.to(memory_format=self.memory_format) if self.memory_format else model

    def images(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=self.memory_format) if self.memory_format else x

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def restore(self, model: nn.Module) -> None:
        if self.memory_format:
            model.to(memory_format=torch.contiguous_format)
