"""Adapter for torchvision's segmentation models, which return a dict.

The zoo contract is a plain logits tensor (so compression methods, tracing and ONNX export
see one output); torchvision's FCN/DeepLabV3/LR-ASPP return {"out": ..., "aux": ...}.
torchvision already resizes "out" to the input size, so no padding is needed.
"""

from __future__ import annotations

import torch
from torch import nn


class OutOnly(nn.Module):
    """Wrap a torchvision segmentation model; forward returns `model(x)["out"]`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]
