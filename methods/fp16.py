"""Half-precision storage: weights are written as float16 and computed in float32.

The simplest honest size reduction, and the README's example of a complete plugin.
"""

from dataclasses import dataclass

import torch

from bench.artifact import dense
from bench.method import Method, register_method


@dataclass
class HalfConfig:
    min_numel: int = 0  # tensors smaller than this stay float32


@register_method("fp16", family="storage")
class HalfStorage(Method):
    Config = HalfConfig
    version = 1

    def encode(self, model, tensors, ctx):
        state = model.state_dict()
        return {k: dense(state[k].half()) if state[k].is_floating_point()
                and state[k].numel() >= self.config.min_numel else et
                for k, et in tensors.items()}

    def check(self, model, meta):
        return [f"{k} holds values float16 cannot represent"
                for k, v in model.state_dict().items()
                if v.is_floating_point() and v.numel() >= self.config.min_numel
                and not torch.equal(v, v.half().float())]
