"""FCN-8s on VGG-16 (Long, Shelhamer, Darrell 2015, arXiv:1411.4038): the original skip net.

VGG-16 (no BatchNorm) with its classifier convolutionalised - fc6 a 7x7 conv to 4096, fc7
a 1x1 conv to 4096, both with ReLU + dropout - a 1x1 class scorer on fc7 (stride 32),
2x learned upsampling fused by addition with a scorer on pool4 (stride 16), again with
pool3 (stride 8), then an 8x upsampling. As in the paper, the upsampling layers are
bias-free transposed convolutions initialised to bilinear interpolation and the scoring
layers start at zero; with `pretrained_backbone=True` fc6/fc7 get VGG's ImageNet fully
connected weights reshaped into convolutions, exactly how FCN was initialised.

One deliberate change: the Caffe model pads the input by 100 pixels and crops the skip
maps by fixed offsets to cope with any size. We instead pad the input to a multiple of 32,
give fc6 "same" padding, and crop the logits back: the same layers and parameters
(134 M, as published), aligned skips, and no wasted computation on a 100-pixel border.
"""

from __future__ import annotations

import torch
from torch import nn

from models._backbones import vgg16
from models._common import PadCrop
from models.registry import register_model


def _bilinear_kernel(channels: int, size: int) -> torch.Tensor:
    """Per-channel bilinear upsampling kernel for a (C, C, k, k) transposed convolution."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = filt1d[:, None] * filt1d[None, :]
    return weight


def _upsample(channels: int, factor: int) -> nn.ConvTranspose2d:
    k = 2 * factor
    up = nn.ConvTranspose2d(channels, channels, k, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(_bilinear_kernel(channels, k))
    return up


def _score(cin: int, num_classes: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, num_classes, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class FCN8s(nn.Module):
    def __init__(self, num_classes: int, pretrained_backbone: bool = False):
        super().__init__()
        features, classifier = vgg16(pretrained_backbone)
        # VGG-16 features: pool3 is layer 16, pool4 is layer 23, pool5 is layer 30
        self.to_pool3 = features[:17]
        self.to_pool4 = features[17:24]
        self.to_pool5 = features[24:]
        fc6, fc7 = nn.Conv2d(512, 4096, 7, padding=3), nn.Conv2d(4096, 4096, 1)
        if classifier is not None:
            with torch.no_grad():
                fc6.weight.copy_(classifier[0].weight.view(4096, 512, 7, 7))
                fc6.bias.copy_(classifier[0].bias)
                fc7.weight.copy_(classifier[3].weight.view(4096, 4096, 1, 1))
                fc7.bias.copy_(classifier[3].bias)
        self.head = nn.Sequential(
            fc6,
            nn.ReLU(inplace=True),
            nn.Dropout2d(),
            fc7,
            nn.ReLU(inplace=True),
            nn.Dropout2d(),
        )
        self.score_fr = _score(4096, num_classes)
        self.score_pool4 = _score(512, num_classes)
        self.score_pool3 = _score(256, num_classes)
        self.upscore2 = _upsample(num_classes, 2)
        self.upscore_pool4 = _upsample(num_classes, 2)
        self.upscore8 = _upsample(num_classes, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool3 = self.to_pool3(x)
        pool4 = self.to_pool4(pool3)
        s = self.score_fr(self.head(self.to_pool5(pool4)))
        s = self.upscore2(s) + self.score_pool4(pool4)
        s = self.upscore_pool4(s) + self.score_pool3(pool3)
        return self.upscore8(s)


@register_model(
    "fcn8s_vgg16",
    paper="Fully Convolutional Networks for Semantic Segmentation (FCN-8s)",
    year=2015,
    input_size=(512, 512),
    output_stride=32,
    published_params=134_000_000,
    published_classes=21,
    source="Long et al. 2015 (arXiv:1411.4038), Table 1: FCN-VGG16 134 M params",
)
def fcn8s_vgg16(num_classes: int, pretrained_backbone: bool = False) -> nn.Module:
    return PadCrop(FCN8s(num_classes, pretrained_backbone), multiple=32)
