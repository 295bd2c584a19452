"""`pt2e_ptq`: PyTorch's own post-training quantization (the PT2E flow, torchao) with the
XNNPACK quantizer, lowered to an ExecuTorch program and evaluated and timed there.

The peer of `ptq` from PyTorch's toolkit, on the same footing: the trained float model, the
same calibration images (the budget's count unless `calibration_images` is set), no
fine-tuning. The model is captured with torch.export, `prepare_pt2e` inserts observers where
XNNPACK's quantizer says its int8 kernels apply (8-bit symmetric weights, per channel by
default; 8-bit asymmetric activations), the calibration images run through it,
`convert_pt2e` turns the observers into quantize/dequantize pairs, and the XNNPACK
partitioner lowers those patterns to integer kernels. The .pte program is the artifact's
bytes, what an app ships; the runner times it against the float baseline in ExecuTorch.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from bench.config import Settings, setting
from bench.method import register_method
from bench.runtimes.base import FP32, INT8
from methods.toolkits.runtime_file import RuntimeFileMethod


@register_method("pt2e_ptq", family="quant")
class Pt2ePTQ(RuntimeFileMethod):
    version = 1
    runtime = "executorch"
    suffixes = {"pte": ".pte"}

    @dataclass
    class Config(Settings):
        # training images for calibration; null: the budget's (what `ptq` uses)
        calibration_images: int | None = setting(None, ge=1)
        per_channel: bool = True  # per-output-channel weight scales (else per tensor)

    def describe(self) -> str:
        return "W8A8" + ("" if self.config.per_channel else " per-tensor")

    def toolkit_compress(self, ctx, model: nn.Module, images) -> tuple[dict[str, bytes], str]:
        from bench.runtimes import require
        from bench.runtimes.executorch_xnnpack import export_program, is_quantized, lower

        require("torchao", "executorch")
        require("executorch", "executorch")
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        quantizer = XNNPACKQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=self.config.per_channel))
        shape = ctx.input_shape
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = prepare_pt2e(export_program(model, shape).module(), quantizer)
            with torch.no_grad():
                for i in range(len(images)):
                    prepared(images[i : i + 1])
            converted = convert_pt2e(prepared)
            exported = torch.export.export(converted, (torch.zeros(1, *shape[1:]),))
        return {"pte": lower(exported)}, INT8 if is_quantized(exported) else FP32

    def file_problems(self, files: dict[str, bytes]) -> list[str]:
        from executorch.runtime import Runtime

        try:
            program = Runtime.get().load_program(files["pte"])
            program.load_method("forward")
        except Exception as e:  # noqa: BLE001 - whatever ExecuTorch says about a bad file
            return [f"the program does not load in ExecuTorch: {type(e).__name__}: {e}"]
        if b"XnnpackBackend" not in files["pte"]:
            return ["the program delegates nothing to XNNPACK"]
        return []
