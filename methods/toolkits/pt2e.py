"""PyTorch's PT2E quantization flow (torchao) with ExecuTorch's XNNPACK quantizer, as
`pt2e_ptq` and `pt2e_qat` share it: capture, the quantizer, calibration, conversion and
lowering to a .pte program, and the check that a file is such a program.

torchao does the quantization (`prepare_pt2e` / `prepare_qat_pt2e` insert observers or
fake-quantizers where the quantizer annotates, `convert_pt2e` turns them into
quantize/dequantize pairs); ExecuTorch supplies the quantizer (where XNNPACK has int8
kernels, and with which observers) and the lowering (bench/runtimes/executorch_xnnpack.py).
Both plugins go through the same functions, so their rows differ in the recipe (training
or not), never in how the graph is captured, converted or lowered.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from bench.config import Settings, setting
from bench.method import NotApplicable
from bench.runtimes.base import FP32, INT8
from methods.toolkits.runtime_file import RuntimeFileMethod


@dataclass
class Pt2eSettings(Settings):
    """What both PT2E plugins take, as `ptq`/`qat` do."""

    # training images for calibration; null: the budget's (what `ptq`/`qat` use)
    calibration_images: int | None = setting(None, ge=1)
    per_channel: bool = True  # per-output-channel weight scales (else per tensor)


class Pt2eMethod(RuntimeFileMethod):
    """The base of the PT2E plugins: an ExecuTorch program is the artifact."""

    runtime = "executorch"
    suffixes = {"pte": ".pte"}

    def describe(self) -> str:
        return "W8A8" + ("" if self.config.per_channel else " per-tensor")

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


def require_pt2e() -> None:
    """torchao and ExecuTorch, or one line naming the extra that installs them."""
    from bench.runtimes import require

    require("torchao", "executorch")
    require("executorch", "executorch")


def prepare(graph: torch.fx.GraphModule, per_channel: bool, qat: bool
            ) -> torch.fx.GraphModule:
    """Observers where XNNPACK's int8 kernels apply: symmetric 8-bit weights (per output
    channel unless `per_channel` is false), 8-bit asymmetric activations. `qat`:
    fake-quantizers that train instead (`prepare_qat_pt2e`: ranges are moving averages of
    what each training step sees, per channel for weights; each conv's BatchNorm folded
    into it in training form), the graph's `train()`/`eval()` switching
    its BatchNorms between batch and running statistics, as the shared training loop
    expects of a module."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e

    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=qat))
    if qat and per_channel:
        # QAT's weight fake-quantizer keeps axis 0 (input channels) for a transposed conv,
        # where XNNPACK's annotator asks for axis 1; XNNPACK then leaves the layer out and
        # ExecuTorch has no portable kernel for it (to_executorch: "Missing out variants:
        # dequantize_per_channel"). Those weights are per tensor in QAT.
        quantizer.set_module_type(nn.ConvTranspose2d, get_symmetric_quantization_config(
            is_per_channel=False, is_qat=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not qat:
            return prepare_pt2e(graph, quantizer)
        return allow_exported_model_train_eval(prepare_qat_pt2e(graph, quantizer))


def capture(model: nn.Module, input_shape: tuple[int, ...], batch: int = 1,
            trainable: bool = False) -> torch.fx.GraphModule:
    """The graph module PT2E prepares: torch.export of `model` at `input_shape`'s height and
    width (static: ENet's pooling indices defeat symbolic ones), at `batch` (`trainable`:
    any batch, autograd on). A model torch.export cannot capture is `NotApplicable`, with
    torch's reason."""
    from bench.runtimes.executorch_xnnpack import export_program

    try:
        return export_program(model, input_shape, batch, trainable).module()
    except Exception as e:  # noqa: BLE001 - torch.export fails in many exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise NotApplicable(f"torch.export cannot capture {type(model).__name__} for PT2E "
                            f"quantization: {type(e).__name__}: {first}"[:400]) from e


def fold_transposed_conv_bn(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Fold each BatchNorm that follows a transposed convolution into it, in place, with
    the trained running statistics (frozen from then on).

    Why: `prepare_qat_pt2e` rewrites every conv-BatchNorm pair into its training form
    (weight scaled by gamma / sigma, output divided back, BatchNorm after), and at
    conversion torchao folds that form back only where its quantized pattern matches,
    which for ENet's transposed convolutions it does not. They stayed in the program as a
    convolution whose weight is computed at run time, which XNNPACK does not take, so
    ExecuTorch ran them in its portable kernel: ENet's QAT program ran at 0.51x the float
    one. Folded first, they are plain biased transposed convolutions, quantized and
    delegated as in `pt2e_ptq`. Ordinary convolutions keep the training-form BatchNorm."""
    from torchao.quantization.pt2e.utils import (
        _is_conv_transpose_node,
        fold_bn_weights_into_conv_node,
    )

    for node in list(graph.graph.nodes):
        if (node.op == "call_function" and "batch_norm" in str(node.target)
                and isinstance(node.args[0], torch.fx.Node)
                and _is_conv_transpose_node(node.args[0])):
            conv = node.args[0]
            bias = conv.args[2] if len(conv.args) > 2 else None
            fold_bn_weights_into_conv_node(conv, conv.args[1], bias, node, graph)
    graph.graph.eliminate_dead_code()
    graph.recompile()
    return graph


@torch.no_grad()
def observe(prepared: torch.fx.GraphModule, images: torch.Tensor) -> None:
    """Run the calibration images through the prepared graph, one at a time (the deployed
    program's batch), so its observers see the ranges `ptq` calibrates on."""
    for i in range(len(images)):
        prepared(images[i : i + 1])


def convert_and_lower(prepared: torch.fx.GraphModule, input_shape: tuple[int, ...]
                      ) -> tuple[dict[str, bytes], str]:
    """Observers -> quantize/dequantize pairs, re-exported at batch 1 and lowered to an
    XNNPACK program: the .pte bytes and the precision the exported graph computes in."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from bench.runtimes.executorch_xnnpack import is_quantized, lower

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = convert_pt2e(prepared)
        exported = torch.export.export(converted, (torch.zeros(1, *input_shape[1:]),))
    return {"pte": lower(exported)}, INT8 if is_quantized(exported) else FP32
