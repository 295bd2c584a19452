"""PP-LiteSeg-T (Peng et al. 2022, arXiv:2204.02681): STDC1 encoder, SPPM, FLD with UAFMs.

As PaddleSeg builds it (paddleseg/models/pp_liteseg.py with the PP-LiteSeg-T config
`pp_liteseg_stdc1_cityscapes_1024x512_scale0.5_160k.yml`):

* encoder: the STDC1 backbone of models/stdc.py, features at strides 8/16/32
  (256/512/1024 channels);
* Simple Pyramid Pooling Module: average pools to 1x1, 2x2 and 4x4 bins, each a 1x1
  conv-BN-ReLU to 128, upsampled and *summed*, then a 3x3 conv-BN-ReLU (128);
* Flexible and Lightweight Decoder: from stride 32 to 8, a Unified Attention Fusion
  Module per level with output widths 128/64/32: the low-level feature goes through a 3x3
  conv-BN-ReLU to the high-level width, the high-level one is upsampled bilinearly, a
  spatial attention map alpha comes from the channel-wise mean and max of both (4 maps,
  3x3 conv-BN-ReLU to 2, 3x3 conv-BN to 1, sigmoid), they are fused as
  low * alpha + high * (1 - alpha) and a 3x3 conv-BN-ReLU sets the output width;
* segmentation head on the stride-8 output: 3x3 conv-BN-ReLU (32), 1x1 classifier.

The two extra heads on the stride-16 and stride-32 decoder outputs are training losses
only (PaddleSeg's eval branch never runs them) and are left out, as the harness trains
with the plain loss. UAFM's fixed scale (a frozen parameter of value 1 in PaddleSeg) is
the constant 1. Any input size works; logits are upsampled bilinearly to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models._common import init_weights, no_pretrained_backbone
from models.registry import register_model
from models.stdc import STDCNet, conv_bn_relu


class SPPM(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, bins=(1, 2, 4)):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), conv_bn_relu(cin, mid, 1, bias=True))
            for b in bins)
        self.out = conv_bn_relu(mid, cout, 3, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        total = sum(F.interpolate(s(x), size=size, mode="bilinear", align_corners=False)
                    for s in self.stages)
        return self.out(total)


class UAFM(nn.Module):
    """Unified attention fusion with spatial attention (PaddleSeg's UAFM_SpAtten)."""

    def __init__(self, low_ch: int, high_ch: int, out_ch: int):
        super().__init__()
        self.conv_low = conv_bn_relu(low_ch, high_ch, 3)
        self.atten = nn.Sequential(
            conv_bn_relu(4, 2, 3),
            nn.Conv2d(2, 1, 3, padding=1, bias=False), nn.BatchNorm2d(1), nn.Sigmoid())
        self.conv_out = conv_bn_relu(high_ch, out_ch, 3)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        low = self.conv_low(low)
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        stats = torch.cat([low.mean(1, keepdim=True), low.amax(1, keepdim=True),
                           high.mean(1, keepdim=True), high.amax(1, keepdim=True)], dim=1)
        alpha = self.atten(stats)
        return self.conv_out(low * alpha + high * (1 - alpha))


class PPLiteSeg(nn.Module):
    def __init__(self, num_classes: int, decoder_widths=(32, 64, 128), head_width: int = 32,
                 sppm_width: int = 128):
        super().__init__()
        self.backbone = STDCNet()
        self.sppm = SPPM(self.backbone.channels[-1], sppm_width, sppm_width)
        highs = (*decoder_widths[1:], sppm_width)
        # ordered stride 8, 16, 32 like the backbone's features
        self.fusions = nn.ModuleList(UAFM(low, high, out) for low, high, out in
                                     zip(self.backbone.channels, highs, decoder_widths))
        self.head = nn.Sequential(conv_bn_relu(decoder_widths[0], head_width, 3),
                                  nn.Conv2d(head_width, num_classes, 1, bias=False))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        high = self.sppm(feats[-1])
        for low, fuse in zip(reversed(feats), reversed(self.fusions)):
            high = fuse(low, high)
        y = self.head(high)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


@register_model(
    "pp_liteseg_t",
    paper="PP-LiteSeg: A Superior Real-Time Semantic Segmentation Model (PP-LiteSeg-T)",
    year=2022,
    input_size=(512, 1024),
    output_stride=32,
    published_classes=19,  # the Cityscapes setting its mIoU/FPS are published for
    source="Peng et al. 2022 (arXiv:2204.02681) Table 4 and PaddleSeg configs/pp_liteseg "
    "publish mIoU and FPS only (PP-LiteSeg-T1, STDC1, 512x1024): no parameter or FLOPs "
    "figure is published for it; the layers follow PaddleSeg's pp_liteseg.py with the "
    "PP-LiteSeg-T config (decoder 32/64/128, head 32)",
)
def pp_liteseg_t(num_classes: int, pretrained_backbone: bool = False) -> nn.Module:
    """Trained from scratch: there is no local ImageNet STDC1 checkpoint to start from."""
    no_pretrained_backbone("pp_liteseg_t", pretrained_backbone)
    return PPLiteSeg(num_classes)
