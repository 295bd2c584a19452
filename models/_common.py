"""Helpers shared by the zoo's builders (underscore: the registry does not import it as a model).

Three jobs only:

* `pad_to_multiple` / `PadCrop`: every zoo model must return logits at the input's exact
  H x W for *any* size (CamVid is 360x480, our synthetic data 128x128, tests use 97x131).
  Networks with a fixed total stride (pooling indices, additive skips) need H, W divisible
  by it, so we zero-pad bottom/right to the next multiple and crop the logits back. This is
  cheaper and more faithful than resizing the input, and it leaves the original pixels at
  their original positions.
* `load_imagenet`: `pretrained_backbone=True` must never download (the benchmark runs
  offline and must be reproducible) and never unpickle (a weights file is data, and
  torchvision's own loader unpickles with `weights_only=False`: a planted file would run
  code). So we build the network without weights and load torchvision's file ourselves,
  from `$SEGBENCH_WEIGHTS_DIR` or the torch hub cache, only if its SHA-256 starts with the
  hash prefix torchvision publishes in the file name, with `torch.load(weights_only=True)`.
* `MatMul`: an activation x activation product (attention) as a module, so quantization
  can place a quantizer on each operand.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from bench.digest import file_sha256


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad (N, C, H, W) at the bottom/right so H and W divide `multiple`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return x, (h, w)


class MatMul(nn.Module):
    """`a @ b` (or `a @ bᵀ` over the last two axes) between two activations, as a module:
    so a quantizer can be put on each operand right where the product reads it
    (methods/quant/plan.py), which `torch.matmul` in a forward gives no place for. No
    parameters; free under the zoo's conv/linear MAdd convention."""

    def __init__(self, transpose_b: bool = False):
        super().__init__()
        self.transpose_b = transpose_b

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ (b.transpose(-2, -1) if self.transpose_b else b)

    def extra_repr(self) -> str:
        return f"transpose_b={self.transpose_b}"


class PadCrop(nn.Module):
    """Run `net` on an input padded to a multiple of `multiple`, crop the output back."""

    def __init__(self, net: nn.Module, multiple: int):
        super().__init__()
        self.net = net
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x, self.multiple)
        return self.net(x)[..., :h, :w]


WEIGHTS_DIR_ENV = "SEGBENCH_WEIGHTS_DIR"


def _file_name(weights: Any) -> str:
    return os.path.basename(urlparse(weights.url).path)


def _checkpoint_path(weights: Any) -> str:
    """Where the weights file is looked for: `$SEGBENCH_WEIGHTS_DIR` first, then the torch
    hub cache (`torch.hub.get_dir()/checkpoints`, where torchvision downloads to)."""
    name = _file_name(weights)
    hub = os.path.join(torch.hub.get_dir(), "checkpoints", name)
    own = os.environ.get(WEIGHTS_DIR_ENV)
    if own and os.path.isfile(os.path.join(own, name)):
        return os.path.join(own, name)
    return hub


def imagenet_state_dict(weights: Any) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet state dict for `weights` (a torchvision weights enum, or
    anything with its `.url`), read from local disk only after its SHA-256 matched the
    prefix in the file name, and without unpickling objects. Raises RuntimeError naming
    the file otherwise."""
    path = _checkpoint_path(weights)
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise RuntimeError(
            f"pretrained_backbone=True needs the ImageNet weights {weights} ({name}), which "
            f"are not in ${WEIGHTS_DIR_ENV} nor in the local torch hub cache "
            f"({os.path.dirname(path)}). Downloads are disabled: fetch {weights.url} on a "
            f"machine with network access and put it in a directory named by "
            f"${WEIGHTS_DIR_ENV}, or pass pretrained_backbone=False."
        )
    m = re.search(r"-([0-9a-f]{8,64})\.pth$", name)
    if m is None:
        raise RuntimeError(f"{path}: the file name carries no torchvision hash prefix "
                           f"(<name>-<sha256 prefix>.pth); refusing to load it")
    if not file_sha256(path).startswith(m.group(1)):
        raise RuntimeError(f"{path}: its SHA-256 does not start with {m.group(1)}, the hash "
                           f"torchvision publishes for it: a damaged or substituted file, "
                           f"refused; fetch {weights.url} again")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise RuntimeError(f"{path}: not a plain tensor checkpoint, refused "
                           f"(weights_only load: {str(e).splitlines()[0]})") from None


def load_imagenet(module: nn.Module, weights: Any, prefix: str = "") -> None:
    """Load `weights` (see `imagenet_state_dict`) into `module`, which holds the keys that
    start with `prefix` in torchvision's model (e.g. `features.` for a VGG's features).
    Every tensor of `module` must come from the file; extra file entries (a classifier
    the module dropped) are ignored."""
    state = {k[len(prefix):]: v for k, v in imagenet_state_dict(weights).items()
             if k.startswith(prefix)}
    own = module.state_dict()
    # older torchvision files predate BatchNorm's step counter, which load_state_dict adds
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    if missing:
        raise RuntimeError(f"{_file_name(weights)} lacks {len(missing)} tensor(s) of the "
                           f"backbone, e.g. {missing[0]!r}")
    module.load_state_dict({k: state[k] for k in own if k in state}, strict=True)


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
