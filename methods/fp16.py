"""Half-precision storage: weights are written as float16 and computed in float32.

The simplest honest size reduction, and docs/adding-a-method.md's example of a complete
plugin.
"""

from dataclasses import dataclass

import torch

from bench.artifact import dense
from bench.config import Settings, setting
from bench.method import Method, register_method


@register_method("fp16", family="storage")
class HalfStorage(Method):
    version = 1

    @dataclass
    class Config(Settings):
        min_numel: int = setting(0, ge=0)  # tensors smaller than this stay float32

    def stored_half(self, t: torch.Tensor) -> bool:
        return t.is_floating_point() and t.numel() >= self.config.min_numel

    def encode(self, ctx, model, tensors):
        state = model.state_dict()
        return {k: dense(state[k].half()) if self.stored_half(state[k]) else et
                for k, et in tensors.items()}

    def check(self, model, meta):
        return [f"{k} holds values float16 cannot represent"
                for k, v in model.state_dict().items()
                if self.stored_half(v) and not torch.equal(v, v.half().float())]
