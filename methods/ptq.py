"""`ptq`: post-training static quantization, the baseline every QAT row is compared with.

The same folding, placement, brevitas quantizers and calibration as `qat`
(methods/quant/method.py), with no fine-tuning: activation scales come from brevitas's
calibration (99.999th percentile of each activation over the budget's calibration images,
the first images of the training split at the evaluation transform, so it is
deterministic), weight scales from the weights' per-channel maximum magnitude. Shipped and
timed as an integer ONNX model in onnxruntime, like `qat`.
"""

from dataclasses import dataclass

from bench.method import register_method
from methods.quant.method import QuantMethod, QuantMethodConfig


@register_method("ptq", family="quant")
class PTQ(QuantMethod):
    version = 1
    sweep = [{"weight_bits": 8, "act_bits": 8}]

    @dataclass
    class Config(QuantMethodConfig):
        """Post-training quantization: no settings beyond the shared ones."""
