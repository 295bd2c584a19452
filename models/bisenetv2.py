"""BiSeNet V2 (Yu et al. 2021, IJCV; arXiv:2004.02147): a bilateral real-time network.

Built as PaddleSeg's `BiSeNetV2` (paddleseg/models/bisenet.py), whose measured params and
FLOPs are the published figures we check against, with the paper's Table 1 widths:

* detail branch: eight 3x3 conv-BN-ReLU, widths 64/64/128, stride 8;
* semantic branch (lambda = 1/4): stem (3x3 s2, then a 1x1/3x3-s2 path beside a 3x3
  max-pool, fused by a 3x3), gather-and-expansion layers (expansion 6; stride-2 ones with a
  depthwise-separable shortcut) at widths 32/64/128, and the context-embedding block
  (global pool - BN - 1x1 conv-BN-ReLU, added back, then a plain 3x3 conv);
* bilateral guided aggregation: each branch gates the other through a sigmoid, at the
  detail branch's stride 8 and at the semantic branch's stride 32, summed, 3x3 conv-BN;
* segmentation head: 3x3 conv-BN-ReLU (128), dropout 0.1, 1x1 classifier.

Convolutions carry biases as in PaddleSeg's layers (Paddle's default). The four auxiliary
heads of the paper's "booster" training run only in training there and never at inference;
the harness trains with the plain loss on the main logits, so they are left out (they
would be parameters no deployed model has). All resizing is to the neighbour's size, so
any input size works; logits are upsampled bilinearly to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models._common import init_weights, no_pretrained_backbone
from models.registry import register_model


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1,
            relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Stem(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = conv_bn(cin, cout, 3, 2)
        self.left = nn.Sequential(conv_bn(cout, cout // 2, 1), conv_bn(cout // 2, cout, 3, 2))
        self.right = nn.MaxPool2d(3, 2, 1)
        self.fuse = conv_bn(2 * cout, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.fuse(torch.cat([self.left(x), self.right(x)], dim=1))


class GatherExpand(nn.Module):
    """GE layer: 3x3 conv, depthwise expansion x6 (two depthwise convs when striding),
    1x1 projection, residual (a depthwise-separable shortcut when striding), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 6):
        super().__init__()
        mid = cin * expand
        body = [conv_bn(cin, cin, 3), conv_bn(cin, mid, 3, stride, groups=cin, relu=False)]
        if stride == 2:
            body.append(conv_bn(mid, mid, 3, groups=mid, relu=False))
        body.append(conv_bn(mid, cout, 1, relu=False))
        self.body = nn.Sequential(*body)
        self.shortcut = None
        if stride == 2:
            self.shortcut = nn.Sequential(conv_bn(cin, cin, 3, 2, groups=cin, relu=False),
                                          conv_bn(cin, cout, 1, relu=False))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.body(x) + skip)


class ContextEmbedding(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(c)
        self.conv_gap = conv_bn(c, c, 1)
        self.conv_last = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gap = self.conv_gap(self.bn(x.mean(dim=(2, 3), keepdim=True)))
        return self.conv_last(gap + x)


class SemanticBranch(nn.Module):
    def __init__(self, widths=(16, 32, 64, 128), depths=(1, 1, 3)):
        super().__init__()
        c1, c3, c4, c5 = widths
        self.stem = Stem(3, c1)
        stages = []
        for cin, cout, extra in zip((c1, c3, c4), (c3, c4, c5), depths):
            stages.append(nn.Sequential(GatherExpand(cin, cout, 2),
                                        *(GatherExpand(cout, cout, 1) for _ in range(extra))))
        self.stages = nn.Sequential(*stages)
        self.ce = ContextEmbedding(c5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ce(self.stages(self.stem(x)))


class GuidedAggregation(nn.Module):
    def __init__(self, c: int = 128):
        super().__init__()
        self.detail_keep = nn.Sequential(conv_bn(c, c, 3, groups=c, relu=False),
                                         nn.Conv2d(c, c, 1))
        self.detail_down = nn.Sequential(conv_bn(c, c, 3, 2, relu=False),
                                         nn.AvgPool2d(3, 2, 1))
        self.semantic_keep = nn.Sequential(conv_bn(c, c, 3, groups=c, relu=False),
                                           nn.Conv2d(c, c, 1))
        self.semantic_up = conv_bn(c, c, 3, relu=False)
        self.conv = conv_bn(c, c, 3, relu=False)

    def forward(self, detail: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        size = detail.shape[-2:]
        up = F.interpolate(self.semantic_up(semantic), size=size, mode="bilinear",
                           align_corners=False)
        high = self.detail_keep(detail) * torch.sigmoid(up)
        low = self.detail_down(detail) * torch.sigmoid(self.semantic_keep(semantic))
        low = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
        return self.conv(high + low)


class BiSeNetV2(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.detail = nn.Sequential(
            conv_bn(3, 64, 3, 2), conv_bn(64, 64),
            conv_bn(64, 64, 3, 2), conv_bn(64, 64), conv_bn(64, 64),
            conv_bn(64, 128, 3, 2), conv_bn(128, 128), conv_bn(128, 128),
        )
        self.semantic = SemanticBranch()
        self.bga = GuidedAggregation(128)
        self.head = nn.Sequential(conv_bn(128, 128), nn.Dropout(0.1),
                                  nn.Conv2d(128, num_classes, 1))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.bga(self.detail(x), self.semantic(x)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


@register_model(
    "bisenetv2",
    paper="BiSeNet V2: Bilateral Network with Guided Aggregation for Real-time Semantic "
    "Segmentation",
    year=2021,
    input_size=(512, 1024),
    output_stride=32,
    published_params=2_330_000,
    published_classes=19,
    published_madds=16.14,
    source="PaddleSeg docs/model_zoo_overview.md summary table (Cityscapes, 19 classes, "
    "1024x512 input; the IJCV paper publishes no parameter count): BiSeNetv2 2.33 M params, "
    "16.14 GFLOPs as paddle.flops counts them, i.e. conv/linear multiply-adds plus a bias "
    "add per conv output and 2 ops per BatchNorm element (not 2 x MAdds)",
)
def bisenetv2(num_classes: int, pretrained_backbone: bool = False) -> nn.Module:
    """Trained from scratch: BiSeNet V2 has no ImageNet backbone."""
    no_pretrained_backbone("bisenetv2", pretrained_backbone)
    return BiSeNetV2(num_classes)
