"""`nncf_ptq`: OpenVINO's post-training quantization (NNCF), evaluated and timed in OpenVINO.

The peer of `ptq` from Intel's toolkit, on the same footing: the trained float model, the
same calibration images (the first training images at the evaluation transform, the
budget's count unless `calibration_images` is set), no fine-tuning. The model goes through
the zoo's ONNX export into OpenVINO exactly as the OpenVINO runtime takes the float
baseline (`bench.runtimes.openvino_cpu.openvino_model`: native PReLU, max-pooling indices
by slices, shape subgraphs folded; version 2, docs/runtimes.md), `nncf.quantize` inserts
FakeQuantize nodes calibrated on those images (8-bit weights per channel, 8-bit
activations; `preset` performance: symmetric activations, mixed: asymmetric; NNCF's fast
bias correction, or its full one with `fast_bias_correction=false`), and the result is the
OpenVINO IR (.xml graph and .bin weights): the artifact's bytes, what a user
ships. The runner times it against the float baseline in OpenVINO.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from torch import nn

from bench.config import Settings, setting
from bench.method import register_method
from bench.runtimes.base import FP32, INT8
from methods.toolkits.runtime_file import RuntimeFileMethod

PRESETS = ("performance", "mixed")


@register_method("nncf_ptq", family="quant")
class NncfPTQ(RuntimeFileMethod):
    version = 2  # 2: OpenVINO's export (native PReLU, sliced pool indices, folded shapes)
    runtime = "openvino"
    suffixes = {"xml": ".xml", "bin": ".bin"}
    # NNCF's defaults, and its full bias correction (what recovers U-Net-small on CamVid)
    sweep = [{}, {"fast_bias_correction": False}]

    @dataclass
    class Config(Settings):
        # training images for calibration; null: the budget's (what `ptq` uses)
        calibration_images: int | None = setting(None, ge=1)
        # performance: symmetric activations; mixed: asymmetric activations
        preset: str = setting("performance", choices=PRESETS)
        # NNCF's FastBiasCorrection (its default) or, false, the full BiasCorrection, which
        # re-estimates each layer's bias shift from the quantized model's own activations
        fast_bias_correction: bool = setting(True, new=True)

    def describe(self) -> str:
        return ("W8A8" + ("" if self.config.preset == "performance" else " mixed")
                + ("" if self.config.fast_bias_correction else " full-bias-correction"))

    def toolkit_compress(self, ctx, model: nn.Module, images) -> tuple[dict[str, bytes], str]:
        from bench.runtimes import require

        ov = require("openvino", "openvino")
        nncf = require("nncf", "openvino")
        from bench.runtimes.openvino_cpu import openvino_model

        ov_model = openvino_model(model, ctx.input_shape)
        data = nncf.Dataset([images[i : i + 1].numpy() for i in range(len(images))])
        preset = {"performance": nncf.QuantizationPreset.PERFORMANCE,
                  "mixed": nncf.QuantizationPreset.MIXED}[self.config.preset]
        quantized = nncf.quantize(ov_model, data, subset_size=len(images), preset=preset,
                                  fast_bias_correction=self.config.fast_bias_correction)
        with tempfile.TemporaryDirectory() as d:
            xml = os.path.join(d, "model.xml")
            ov.save_model(quantized, xml, compress_to_fp16=False)
            files = {"xml": open(xml, "rb").read(),
                     "bin": open(os.path.join(d, "model.bin"), "rb").read()}
        return files, INT8 if fake_quantize_count(quantized) else FP32

    def file_problems(self, files: dict[str, bytes]) -> list[str]:
        import numpy as np
        import openvino as ov

        try:
            weights = ov.Tensor(np.frombuffer(files["bin"], dtype=np.uint8).copy())
            model = ov.Core().read_model(files["xml"].decode(), weights)
        except Exception as e:  # noqa: BLE001 - whatever OpenVINO says about a bad IR
            return [f"the IR does not load in OpenVINO: {type(e).__name__}: {e}"]
        if not fake_quantize_count(model):
            return ["the IR holds no FakeQuantize node: nothing is quantized"]
        return []


def fake_quantize_count(ov_model) -> int:
    return sum(op.get_type_name() == "FakeQuantize" for op in ov_model.get_ops())
