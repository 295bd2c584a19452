"""onnxruntime's CPU execution provider: the zoo's ONNX export (methods/onnx, which also
writes brevitas' integer layers as QuantizeLinear/DequantizeLinear pairs) in a session
with every graph optimisation. A QDQ graph runs integer kernels (QLinearConv...) where
onnxruntime fuses them; the precision is read from the optimised graph."""

from __future__ import annotations

from torch import nn

from bench.runtimes.base import FP32, INT8, Compiled, Runtime, RuntimeModule

INTEGER_OPS = ("QLinear", "ConvInteger", "MatMulInteger", "QGemm")


class OnnxRuntimeCPU(Runtime):
    name = "onnxruntime"

    def compile(self, model: nn.Module, input_shape: tuple[int, ...]) -> Compiled:
        from methods.onnx.export import export_onnx

        if isinstance(model, RuntimeModule):
            raise TypeError(f"a {model.runtime} file does not load in onnxruntime")
        return self.load({"onnx": export_onnx(model, input_shape)}, input_shape, None, model)

    def load(self, files: dict[str, bytes], input_shape: tuple[int, ...],
             precision: str | None = None, model: nn.Module | None = None) -> Compiled:
        from methods.onnx.runtime import OrtPredictor, count_ops

        data = files["onnx"]
        predict = OrtPredictor(model, self.threads(), "auto", first=(input_shape, data))
        layout = predict.layouts[tuple(input_shape[-2:])]
        ops = count_ops(data, threads=self.threads(), layout=layout)
        integer = {k: v for k, v in sorted(ops.items()) if k.startswith(INTEGER_OPS)}
        return Compiled(predict, INT8 if integer else FP32,
                        {"layout": layout, "integer_ops": integer,
                         "float_convs": ops.get("Conv", 0) + ops.get("ConvTranspose", 0)})


RUNTIME = OnnxRuntimeCPU()
