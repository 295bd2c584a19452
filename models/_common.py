"""Helpers shared by the zoo's builders (underscore: the registry does not import it as a model).

Two jobs only:

* `pad_to_multiple` / `PadCrop`: every zoo model must return logits at the input's exact
  H x W for *any* size (CamVid is 360x480, our synthetic data 128x128, tests use 97x131).
  Networks with a fixed total stride (pooling indices, additive skips) need H, W divisible
  by it, so we zero-pad bottom/right to the next multiple and crop the logits back. This is
  cheaper and more faithful than resizing the input, and it leaves the original pixels at
  their original positions.
* `imagenet_weights`: `pretrained_backbone=True` must never download (the benchmark runs
  offline and must be reproducible), so we only accept a torchvision weights file that is
  already in the torch hub cache and otherwise fail with a message saying where to put it.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad (N, C, H, W) at the bottom/right so H and W divide `multiple`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return x, (h, w)


class PadCrop(nn.Module):
    """Run `net` on an input padded to a multiple of `multiple`, crop the output back."""

    def __init__(self, net: nn.Module, multiple: int):
        super().__init__()
        self.net = net
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x, self.multiple)
        return self.net(x)[..., :h, :w]


def _checkpoint_path(weights: Any) -> str:
    name = os.path.basename(urlparse(weights.url).path)
    return os.path.join(torch.hub.get_dir(), "checkpoints", name)


def imagenet_weights(weights: Any, pretrained: bool) -> Any:
    """Return the torchvision weights enum `weights` if wanted and cached locally, else None.

    Raises RuntimeError (naming the file and the directory) if `pretrained` is set but the
    file is not in the torch hub cache: torchvision would otherwise download it silently.
    """
    if not pretrained:
        return None
    path = _checkpoint_path(weights)
    if not os.path.isfile(path):
        raise RuntimeError(
            f"pretrained_backbone=True needs the ImageNet weights {weights} "
            f"({os.path.basename(path)}), which are not in the local torch hub cache. "
            f"Downloads are disabled: fetch {weights.url} on a machine with network access "
            f"and copy it to {path} (or set TORCH_HOME), or pass pretrained_backbone=False."
        )
    return weights


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan-in) convolutions, unit BatchNorm: the DeepLabV3+ reference init.

    Biases keep PyTorch's default init, as in the reference."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def no_pretrained_backbone(name: str, pretrained_backbone: bool) -> None:
    """Models trained from scratch accept the uniform flag but reject True loudly."""
    if pretrained_backbone:
        raise ValueError(f"{name} has no ImageNet backbone; pretrained_backbone must be False")
