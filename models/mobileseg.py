"""`mobileseg`: our definition of the smartphone-segmentation thesis' "MobileSeg".

The thesis names MobileSeg without specifying it, so this is OUR documented interpretation,
not a published architecture: torchvision's MobileNetV2 encoder (features up to block 17,
the 1x1-to-1280 layer dropped) with LinkNet's additive decoder (models/linknet.py). Decoder
blocks go 320 -> 96 -> 32 -> 24 channels, each upsampling x2 and adding the MobileNetV2
feature of the same stride (blocks 13, 6, 3), then LinkNet's final block takes stride 4 to
full resolution. Total stride 32; inputs are padded to a multiple of 32 and the logits
cropped back. There is no published parameter count to compare with.
"""

from __future__ import annotations

import torch
from torch import nn

from models._backbones import mobilenet_v2
from models._common import PadCrop
from models.linknet import decoder_block, final_block
from models.registry import register_model


class MobileSeg(nn.Module):
    def __init__(self, num_classes: int, pretrained_backbone: bool = False):
        super().__init__()
        layers = {"3": "s4", "6": "s8", "13": "s16", "17": "s32"}
        self.encoder = mobilenet_v2(pretrained_backbone, return_layers=layers)
        self.decoder = nn.ModuleList(
            [decoder_block(320, 96, 2), decoder_block(96, 32, 2), decoder_block(32, 24, 2)]
        )
        self.final = final_block(24, 32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s4, s8, s16, s32 = self.encoder(x).values()
        d = self.decoder[0](s32) + s16
        d = self.decoder[1](d) + s8
        d = self.decoder[2](d) + s4
        return self.final(d)


@register_model(
    "mobileseg",
    paper="MobileSeg (named in the smartphone-segmentation thesis; our definition)",
    year=2018,
    input_size=(360, 480),
    output_stride=32,
    source="our definition: MobileNetV2 encoder + LinkNet additive decoder",
)
def mobileseg(num_classes: int, pretrained_backbone: bool = False) -> nn.Module:
    return PadCrop(MobileSeg(num_classes, pretrained_backbone), multiple=32)
