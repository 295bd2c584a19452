"""Eager PyTorch: the model as the run holds it, in float32 (what every row has always
been timed in). A model with fake-quantized layers computes in float here: fp32."""

from __future__ import annotations

from torch import nn

from bench.runtimes.base import FP32, Compiled, Runtime, RuntimeModule


class TorchEager(Runtime):
    name = "torch"

    def compile(self, model: nn.Module, input_shape: tuple[int, ...]) -> Compiled:
        if isinstance(model, RuntimeModule):
            raise TypeError(f"a {model.runtime} file does not run in eager PyTorch")
        model.eval()
        return Compiled(model, FP32)


RUNTIME = TorchEager()
