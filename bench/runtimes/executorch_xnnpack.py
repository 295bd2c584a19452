"""ExecuTorch with the XNNPACK delegate: the CPU kernels Android and iOS apps run. A
PyTorch model is captured with torch.export (ENet's max-unpooling written as a scatter,
methods/onnx/export.py), lowered with the XNNPACK partitioner and serialised to a .pte
program, which the ExecuTorch runtime loads and runs. Programs have static shapes: batch 1,
one image at a time. The precision is int8 when the exported graph holds quantize ops (a
PT2E-quantized model); XNNPACK then runs those partitions in int8.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from bench.runtimes.base import FP32, INT8, Compiled, Runtime, RuntimeModule, per_image

QUANT_OPS = ("quantize_per_tensor", "quantize_per_channel", "quantize_affine")


def export_program(model: nn.Module, input_shape: tuple[int, ...], batch: int = 1,
                   trainable: bool = False):
    """torch.export of `model` (eval, CPU) at `batch`. `trainable`: the batch dimension
    dynamic and autograd on, for a graph that trains (PT2E QAT) at the loader's batch."""
    from methods.onnx.export import exportable

    model.eval()
    x = torch.zeros(batch, *input_shape[1:])
    dims = {"x": {0: torch.export.Dim.AUTO}} if trainable else None
    with exportable(model), torch.set_grad_enabled(trainable), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.export.export(model, (x,), dynamic_shapes=dims)


def is_quantized(exported) -> bool:
    gm = exported.graph_module if hasattr(exported, "graph_module") else exported
    return any(n.op == "call_function" and any(q in str(n.target) for q in QUANT_OPS)
               for n in gm.graph.nodes)


def lower(exported) -> bytes:
    """An exported program lowered to XNNPACK and serialised (.pte bytes)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        return edge.to_executorch().buffer


class ExecuTorchXnnpack(Runtime):
    name = "executorch"

    def compile(self, model: nn.Module, input_shape: tuple[int, ...]) -> Compiled:
        if isinstance(model, RuntimeModule):
            if model.runtime == self.name:
                return self.load(model.files(), input_shape, model.precision)
            raise TypeError(f"a {model.runtime} file does not load in ExecuTorch")
        exported = export_program(model, input_shape)
        return self.load({"pte": lower(exported)}, input_shape,
                         INT8 if is_quantized(exported) else FP32)

    def load(self, files: dict[str, bytes], input_shape: tuple[int, ...],
             precision: str | None = None) -> Compiled:
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime as EtRuntime

        # XNNPACK's threadpool is process-wide: size it to the run's threads
        if portable_lib._threadpool_get_thread_count() != self.threads():
            portable_lib._unsafe_reset_threadpool(self.threads())
        data = files["pte"]
        program = EtRuntime.get().load_program(data)
        method = program.load_method("forward")  # needs `program` alive: kept in `run`
        if precision is None:
            raise ValueError("an ExecuTorch program's precision is not readable from its "
                             "bytes: the code that lowered it must say it")

        def run(x: torch.Tensor, _keep=program) -> torch.Tensor:
            return method.execute([x])[0]

        return Compiled(per_image(run), precision, {"pte_bytes": len(data)})


RUNTIME = ExecuTorchXnnpack()
