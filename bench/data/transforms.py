"""Training augmentation and evaluation resizing, on tensors.

Random numbers come from a generator the dataset seeds per (seed, epoch, index), so a
training run is a pure function of its config on the CPU.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from bench.data.base import IMAGENET_MEAN, IMAGENET_STD

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def to_tensors(image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 HWC image and integer HW label -> float CHW in [0, 1] and int64 HW."""
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    lab = torch.from_numpy(np.ascontiguousarray(label)).long()
    return img, lab


def normalize(img: torch.Tensor) -> torch.Tensor:
    return (img - _MEAN) / _STD


def resize_pair(img: torch.Tensor, lab: torch.Tensor, size: tuple[int, int]):
    if tuple(img.shape[-2:]) == tuple(size):
        return img, lab
    img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]
    lab = F.interpolate(lab[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return img, lab


def train_augment(
    img: torch.Tensor,
    lab: torch.Tensor,
    crop: int,
    ignore_index: int,
    gen: torch.Generator,
    scale_range: tuple[float, float] = (0.5, 2.0),
):
    """Random scale, random crop (padding with ignore), horizontal flip, normalisation."""
    h, w = img.shape[-2:]
    lo, hi = scale_range
    s = lo + (hi - lo) * float(torch.rand((), generator=gen))
    nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    img, lab = resize_pair(img, lab, (nh, nw))
    ph, pw = max(crop - nh, 0), max(crop - nw, 0)
    if ph or pw:
        img = F.pad(img, (0, pw, 0, ph), value=0.0)
        lab = F.pad(lab, (0, pw, 0, ph), value=ignore_index)
    H, W = img.shape[-2:]
    top = int(torch.randint(0, H - crop + 1, (), generator=gen))
    left = int(torch.randint(0, W - crop + 1, (), generator=gen))
    img = img[:, top : top + crop, left : left + crop]
    lab = lab[top : top + crop, left : left + crop]
    if float(torch.rand((), generator=gen)) < 0.5:
        img, lab = img.flip(-1), lab.flip(-1)
    return normalize(img), lab


def eval_resize(img: torch.Tensor, lab: torch.Tensor, short_side: int | None):
    """Evaluation at a fixed size: the short side to `short_side` (None keeps native size)."""
    if short_side is not None:
        h, w = img.shape[-2:]
        r = short_side / min(h, w)
        size = (int(math.floor(h * r + 0.5)), int(math.floor(w * r + 0.5)))
        img, lab = resize_pair(img, lab, size)
    return normalize(img), lab


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + epoch) * 10_000_019 + index)
    return g
