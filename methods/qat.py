"""`qat`: quantization-aware training with brevitas, shipped as an integer ONNX model.

The trained baseline's BatchNorms are folded into their convolutions, its conv /
transposed-conv / linear layers and activations become brevitas quantized layers
(methods/quant/plan.py says where), activation scales are calibrated on training images,
and the harness's shared loop fine-tunes weights and scales for the budget's fine-tuning
epochs at the fine-tuning learning rate. The result is frozen to integer weights packed at
their bit-width and evaluated and timed in onnxruntime (methods/quant/method.py).
"""

from dataclasses import dataclass

from bench.config import setting
from bench.method import register_method
from methods.quant.method import QuantMethod, QuantMethodConfig


@register_method("qat", family="quant")
class QAT(QuantMethod):
    # 2: PReLU, LayerNorm, GELU and Softmax outputs read by an integer op get a quantizer
    # and attention matmuls take quantized operands (methods/quant/plan.py): another model
    # for ENet and SegFormer, so another run id. Version-1 artifacts still load and verify.
    version = 2
    sweep = [
        {"weight_bits": 8, "act_bits": 8},
        {"weight_bits": 4, "act_bits": 8},
        {"weight_bits": 4, "act_bits": 4},
        {"weight_bits": 2, "act_bits": 8},
        # mixed precision at the bytes of uniform 4-bit (the W4A8 row above)
        {"weight_bits": "auto", "mean_weight_bits": 4.0, "act_bits": 8},
    ]

    @dataclass
    class Config(QuantMethodConfig):
        # fine-tuning epochs; null: the budget's finetune_epochs
        epochs: int | None = setting(None, ge=0)

    def finetune_epochs(self, ctx) -> int:
        e = self.config.epochs
        return ctx.budget.finetune_epochs if e is None else e
