"""`pt2e_qat`: PyTorch's own quantization-aware training (the PT2E flow, torchao) with the
XNNPACK quantizer, lowered to an ExecuTorch program and evaluated and timed there.

The peer of `qat` from PyTorch's toolkit, at `qat`'s recipe: the trained float model, the
calibration images `ptq` and `qat` use, then the harness's shared loop fine-tunes for the
same epochs (the budget's `finetune_epochs` unless `epochs` is set), at the same learning
rate, with the same loss. So a `qat` row and a `pt2e_qat` row differ in the toolkit
(brevitas' learned scales and folded BatchNorms, shipped as QDQ ONNX to onnxruntime, against
torchao's fake-quantizers with observed ranges, shipped as a .pte to ExecuTorch), not in
the data or the budget.

How: the model is captured with torch.export twice, once at the training batch and crop
(autograd on, any batch) and once at the deployed shape (batch 1, evaluation size), because
ENet's pooling indices keep height and width static; `prepare_qat_pt2e` puts the same
fake-quantizers in both (symmetric 8-bit weights per channel, 8-bit asymmetric activations;
each conv's BatchNorm folded in training form, except after a transposed convolution, where
it is folded with its running statistics first: methods/toolkits/pt2e.py says why). The
calibration images set the deployed graph's ranges, its state is loaded into the training
graph, which the shared loop trains; `finalize` loads the trained state back into the
deployed graph, records what that fake-quantized model predicts, converts and lowers it
(methods/toolkits/pt2e.py, as `pt2e_ptq` does), and checks the program's argmax against the
fake-quantized model's.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from bench.config import setting
from bench.facts import Fact
from bench.method import register_method
from bench.runtimes.base import RuntimeModule
from methods.toolkits.pt2e import (
    Pt2eMethod,
    Pt2eSettings,
    capture,
    convert_and_lower,
    fold_transposed_conv_bn,
    observe,
    prepare,
    require_pt2e,
)

# the ExecuTorch program vs the fake-quantized PyTorch model, fraction of pixels whose
# argmax agrees. Under the target it is a warning, not a failure: on ENet at the smoke
# budget (logits within 0.26, a median top-2 margin of 0.017) torchao's own convert_pt2e
# already moves the argmax on 13 % of pixels before any lowering (measured, 2026-11-29),
# so the row stands and the record says it. A state that does not correspond, or a broken
# conversion, lands near chance, far under the floor.
TARGET_AGREEMENT = 0.99
MIN_AGREEMENT = 0.5

@dataclass
class Pt2eQatGraph(Fact):
    """What `prepare_qat_pt2e` made of the model."""

    key: ClassVar[str] = "pt2e_qat"
    fake_quantizers: int  # weight and activation fake-quantizers in the graph
    calibration_images: int
    train_input_shape: list[int]  # the training graph's example input (batch is dynamic)


@dataclass
class Pt2eQatAgreement(Fact):
    """The .pte program checked against the fake-quantized model it was converted from."""

    key: ClassVar[str] = "pt2e_qat"
    pte_argmax_agreement: float  # fraction of pixels whose argmax class agrees
    agreement_images: int  # validation images (bench/runtimes/deploy.py's)


@register_method("pt2e_qat", family="quant")
class Pt2eQAT(Pt2eMethod):
    # 2: BatchNorms after transposed convolutions folded before preparing, so XNNPACK
    # runs those convolutions (version 1 left them to ExecuTorch's portable kernel)
    version = 2

    @dataclass
    class Config(Pt2eSettings):
        # fine-tuning epochs; null: the budget's finetune_epochs (what `qat` uses)
        epochs: int | None = setting(None, ge=0)

    def __init__(self, config=None):
        super().__init__(config)
        self.deployed: torch.fx.GraphModule | None = None  # the batch-1 twin
        self.structure: nn.Module | None = None  # the float zoo model, for MAdds


    def finetune_epochs(self, ctx) -> int:
        e = self.config.epochs
        return ctx.budget.finetune_epochs if e is None else e

    def compress(self, ctx, model: nn.Module) -> nn.Module:
        require_pt2e()
        model.eval().cpu()
        per_channel = self.config.per_channel
        deployed = prepare(fold_transposed_conv_bn(capture(model, ctx.input_shape)),
                           per_channel, qat=True)
        deployed.eval()
        images = self.calibration(ctx)
        observe(deployed, images)
        sample, _ = ctx.dataset("train", train=True)[0]
        batch = min(ctx.budget.batch_size, len(ctx.dataset("train", train=True)))
        shape = (batch, *sample.shape)
        graph = prepare(fold_transposed_conv_bn(capture(model, shape, batch, trainable=True)),
                        per_channel, qat=True)
        load_twin(graph, deployed)
        self.deployed, self.structure = deployed, model
        ctx.report(Pt2eQatGraph(fake_quantizers=count_fake_quantizers(graph),
                                calibration_images=len(images),
                                train_input_shape=list(shape)))
        return graph

    def finalize(self, ctx, model: nn.Module) -> nn.Module:
        from torchao.quantization.pt2e import disable_observer

        from bench.runtimes import get_runtime
        from bench.runtimes.deploy import agreement_images, argmax_agreement

        if self.deployed is None:
            raise RuntimeError(f"{self.name}: finalize before compress")
        model.cpu().eval()
        deployed = self.deployed
        load_twin(deployed, model)
        deployed.eval()
        deployed.apply(disable_observer)  # the reference must not move the ranges it uses
        reference = copy.deepcopy(deployed)  # convert_pt2e rewrites the graph it is given
        files, precision = convert_and_lower(deployed, ctx.input_shape)
        self.deployed = None
        program = get_runtime(self.runtime).load(files, ctx.input_shape, precision)
        images = agreement_images(ctx)
        agree = argmax_agreement(reference, program.predict, images)
        ctx.report(Pt2eQatAgreement(pte_argmax_agreement=agree, agreement_images=len(images)))
        if agree < MIN_AGREEMENT:
            raise RuntimeError(
                f"the ExecuTorch program agrees with the fake-quantized PT2E model on only "
                f"{agree:.2%} of pixels (need >= {MIN_AGREEMENT:.0%}); the conversion is broken")
        if agree < TARGET_AGREEMENT:
            print(f"warning: {self.name} {self.describe()}: the ExecuTorch program agrees "
                  f"with the fake-quantized model on {agree:.2%} of pixels, under the "
                  f"{TARGET_AGREEMENT:.0%} target (recorded: extras.pt2e_qat)", file=sys.stderr)
        return RuntimeModule(self.runtime, files, precision, structure=self.structure)


def count_fake_quantizers(graph: nn.Module) -> int:
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase

    return sum(isinstance(m, FakeQuantizeBase) for m in graph.modules())


def topology(graph: torch.fx.GraphModule) -> list[tuple[str, str]]:
    """The graph's operations in order, without the shape arithmetic a dynamic batch adds."""
    return [(n.op, str(n.target)) for n in graph.graph.nodes
            if n.op in ("call_function", "call_module") and "sym_size" not in str(n.target)]


def load_twin(dst: torch.fx.GraphModule, src: nn.Module) -> None:
    """Copy the state (weights, BatchNorm statistics, fake-quantizer ranges) between the
    training and the deployed capture of one model, which differ only in input shape: the
    same operations in the same order, so the same state names mean the same tensors."""
    if topology(dst) != topology(src):
        raise RuntimeError("pt2e_qat: the training and the deployed capture of the model "
                           "differ in their operations; their state does not correspond")
    dst.load_state_dict(src.state_dict(), strict=True)
