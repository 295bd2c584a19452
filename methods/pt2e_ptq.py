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

from torch import nn

from bench.method import register_method
from methods.toolkits.pt2e import (
    Pt2eMethod,
    Pt2eSettings,
    capture,
    convert_and_lower,
    observe,
    prepare,
    require_pt2e,
)


@register_method("pt2e_ptq", family="quant")
class Pt2ePTQ(Pt2eMethod):
    version = 1

    Config = Pt2eSettings

    def toolkit_compress(self, ctx, model: nn.Module, images) -> tuple[dict[str, bytes], str]:
        require_pt2e()
        prepared = prepare(capture(model, ctx.input_shape), self.config.per_channel, qat=False)
        observe(prepared, images)
        return convert_and_lower(prepared, ctx.input_shape)
