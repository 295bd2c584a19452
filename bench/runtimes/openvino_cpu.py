"""OpenVINO's CPU plugin. A PyTorch model goes through the zoo's ONNX export (QDQ pairs
included, which OpenVINO turns into its low-precision FakeQuantize form) and OpenVINO's
own converter; an OpenVINO IR (NNCF's output) loads as it is.

The export differs from onnxruntime's in two rewrites, both exact (docs/runtimes.md, "ENet
int8 in OpenVINO"): 2x2 max-pooling with indices is written as strided slices and
comparisons, since OpenVINO runs ONNX MaxPool's indices output in a reference kernel (80 %
of ENet's float time); and PReLU stays the native op, which OpenVINO fuses into the
preceding convolution, in int8 too, where the decomposition onnxruntime needs does not
fuse. `ov.convert_model` (not `Core.read_model`) folds the shape subgraphs of the
dynamic batch, which would otherwise be saved in an IR as a third of its nodes.

Compiled for latency (one stream, the run's threads) with the inference precision pinned
to f32: on CPUs with bf16 or AMX units OpenVINO otherwise runs float models in bf16,
which would make an "fp32" row a bf16 one. The precision recorded is read from the
compiled model: int8 when a convolution runs in u8/i8.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bench.runtimes.base import FP32, INT8, Compiled, Runtime, RuntimeModule

CONVS = ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul")


class OpenVinoCPU(Runtime):
    name = "openvino"

    def config(self) -> dict:
        return {"INFERENCE_NUM_THREADS": self.threads(), "PERFORMANCE_HINT": "LATENCY",
                "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32",
                # denormals read as zero, as in every other runtime here (bench/numerics.py)
                "CPU_DENORMALS_OPTIMIZATION": True}

    def compile(self, model: nn.Module, input_shape: tuple[int, ...]) -> Compiled:
        if isinstance(model, RuntimeModule):
            if model.runtime == self.name:
                return self.load(model.files(), input_shape)
            raise TypeError(f"a {model.runtime} file does not load in OpenVINO")
        return self.build(openvino_model(model, input_shape), input_shape)

    def load(self, files: dict[str, bytes], input_shape: tuple[int, ...],
             precision: str | None = None) -> Compiled:
        import openvino as ov

        weights = ov.Tensor(np.frombuffer(files["bin"], dtype=np.uint8).copy())
        return self.build(ov.Core().read_model(files["xml"].decode(), weights), input_shape)

    def build(self, ov_model, input_shape: tuple[int, ...]) -> Compiled:
        import openvino as ov

        ov_model.reshape({ov_model.inputs[0].any_name: list(input_shape)})
        compiled = ov.Core().compile_model(ov_model, "CPU", self.config())
        request = compiled.create_infer_request()
        low = sorted(_info(op, "layerType") for op in compiled.get_runtime_model().get_ops()
                     if _info(op, "layerType") in CONVS
                     and _info(op, "runtimePrecision").lower() in ("i8", "u8"))

        def run(x: torch.Tensor) -> torch.Tensor:
            out = request.infer({0: x.numpy()}, share_inputs=True)
            return torch.from_numpy(np.array(out[compiled.outputs[0]]))

        def predict(images: torch.Tensor) -> torch.Tensor:
            x = images.detach().to("cpu", torch.float32).contiguous()
            if tuple(x.shape) == tuple(input_shape):
                return run(x).to(images.device)
            return torch.cat([run(x[i : i + 1]) for i in range(x.shape[0])]).to(images.device)

        return Compiled(predict, INT8 if low else FP32, {"integer_layers": len(low)})


def openvino_model(model: nn.Module, input_shape: tuple[int, ...]):
    """The `ov.Model` of a PyTorch model, exported the way OpenVINO runs it fastest."""
    import io

    import openvino as ov

    from methods.onnx.export import export_onnx

    data = export_onnx(model, input_shape, decompose_prelu=False, slice_pool_indices=True)
    return ov.convert_model(io.BytesIO(data))


def _info(op, key: str) -> str:
    rt = op.get_rt_info()
    return rt[key].astype(str) if key in rt.keys() else ""


RUNTIME = OpenVinoCPU()
