"""SegNet (Badrinarayanan, Kendall, Cipolla 2017, TPAMI; arXiv:1511.00561).

Encoder: the 13 convolutional layers of VGG-16 with BatchNorm (torchvision's `vgg16_bn`,
so ImageNet weights load unchanged), split at its five 2x2 max-pools, which here also
return their argmax indices. Decoder: the mirror image - each stage max-unpools with the
indices of the matching encoder pool (SegNet's memory-cheap alternative to FCN's stored
feature maps) and applies the same number of 3x3 conv-BN-ReLU layers, the last of a stage
narrowing to the next stage's width. The final 3x3 convolution maps 64 channels to the
classes, as in the authors' Caffe model. Total stride 32; inputs are padded to a multiple
of 32 and the logits cropped back so the unpooling indices always match.
"""

from __future__ import annotations

import torch
from torch import nn

from models._backbones import vgg16_bn_features
from models._common import PadCrop
from models.registry import register_model


def _encoder_stages(features: nn.Sequential) -> nn.ModuleList:
    """Split VGG features at each max-pool; the pools are applied with indices in forward."""
    stages, current = [], []
    for m in features:
        if isinstance(m, nn.MaxPool2d):
            stages.append(nn.Sequential(*current))
            current = []
        else:
            current.append(m)
    return nn.ModuleList(stages)


def _decoder_stage(widths: list[int]) -> nn.Sequential:
    layers = []
    for cin, cout in zip(widths, widths[1:]):
        layers += [
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class SegNet(nn.Module):
    def __init__(self, num_classes: int, pretrained_backbone: bool = False):
        super().__init__()
        self.encoder = _encoder_stages(vgg16_bn_features(pretrained_backbone))
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, stride=2)
        self.decoder = nn.ModuleList(
            [
                _decoder_stage([64, 64]),
                _decoder_stage([128, 128, 64]),
                _decoder_stage([256, 256, 256, 128]),
                _decoder_stage([512, 512, 512, 256]),
                _decoder_stage([512, 512, 512, 512]),
            ]
        )
        self.classifier = nn.Conv2d(64, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        indices = []
        for stage in self.encoder:
            x, idx = self.pool(stage(x))
            indices.append(idx)
        for stage, idx in zip(reversed(self.decoder), reversed(indices)):
            x = stage(self.unpool(x, idx))
        return self.classifier(x)


@register_model(
    "segnet",
    paper="SegNet: A Deep Convolutional Encoder-Decoder Architecture for Image Segmentation",
    year=2017,
    input_size=(360, 480),
    output_stride=32,
    published_params=29_460_000,
    published_classes=11,
    source="Paszke et al. 2016 (ENet, arXiv:1606.02147), hardware-requirements table: "
    "SegNet 29.46 M params, 286.03 GFLOPs at 640x360 (SegNet paper: 29.5 M)",
    published_madds_at=((360, 640), 286.03),
)
def segnet(num_classes: int, pretrained_backbone: bool = False) -> nn.Module:
    return PadCrop(SegNet(num_classes, pretrained_backbone), multiple=32)
