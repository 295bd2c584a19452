"""STDC1-Seg (Fan et al. 2021, "Rethinking BiSeNet", CVPR; arXiv:2104.13188).

The STDC1 backbone (STDCNet813) and the segmentation network around it, as the official
MichaelFan01/STDC-Seg code and PaddleSeg's port (paddleseg/models/stdcseg.py, backbones/
stdcnet.py; the source of the published figures) build them:

* backbone: 3x3 s2 convs to 32 and 64 channels, then three stages of two Short-Term Dense
  Concatenate modules (widths 256/512/1024). An STDC module is a 1x1 conv to out/2, then
  3x3 convs to out/4 and out/8, out/8 (conv-BN-ReLU, no bias), all four outputs
  concatenated; a striding module downsamples after its first conv with a depthwise 3x3
  s2 conv-BN and average-pools that first output for the concatenation. The ImageNet
  model's final 1x1 conv to 1024 and classifier are not used for segmentation;
* context path: attention refinement modules (3x3 conv-BN-ReLU, channel attention from a
  pooled 1x1 conv-BN-sigmoid) on the stride-16 and stride-32 features, a global-context
  1x1 conv added at stride 32, each level upsampled (nearest) and refined by a 3x3 conv;
* feature fusion module: stride-8 backbone feature and the context path's stride-8 output
  concatenated, 1x1 conv-BN-ReLU to 256, squeeze-excitation style reweighting (1x1 to 64,
  ReLU, 1x1 to 256, sigmoid) added back; segmentation head 3x3 conv-BN-ReLU 256, 1x1
  classifier.

The detail-guidance heads and the two auxiliary heads are training losses only: they run
in no inference forward (PaddleSeg's eval branch skips them) and the harness trains with
the plain loss, so they are left out. Every resize is to a neighbour's size, so any input
size works; logits are upsampled bilinearly to the input size. `STDCNet` is also
PP-LiteSeg's encoder (models/pp_liteseg.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models._common import init_weights, no_pretrained_backbone
from models.registry import register_model


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1,
                 bias: bool = False) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=bias),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class STDCModule(nn.Module):
    """Short-Term Dense Concatenate module with 4 blocks, concatenating their outputs."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        widths = (cout // 2, cout // 4, cout // 8, cout // 8)
        self.convs = nn.ModuleList([conv_bn_relu(cin, widths[0], 1)])
        for i in range(1, 4):
            self.convs.append(conv_bn_relu(widths[i - 1], widths[i], 3))
        self.down = None
        if stride == 2:
            self.down = nn.Sequential(
                nn.Conv2d(widths[0], widths[0], 3, 2, 1, groups=widths[0], bias=False),
                nn.BatchNorm2d(widths[0]))
            self.skip = nn.AvgPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.convs[0](x)
        out = first if self.down is None else self.down(first)
        outs = []
        for conv in self.convs[1:]:
            out = conv(out)
            outs.append(out)
        head = first if self.down is None else self.skip(first)
        return torch.cat([head, *outs], dim=1)


class STDCNet(nn.Module):
    """STDC backbone returning the stride-8, -16 and -32 features (256/512/1024 channels)."""

    def __init__(self, base: int = 64, layers=(2, 2, 2)):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(3, base // 2, 3, 2),
                                  conv_bn_relu(base // 2, base, 3, 2))
        stages, cin = [], base
        for i, n in enumerate(layers):
            cout = base * 4 * 2 ** i
            stages.append(nn.Sequential(STDCModule(cin, cout, 2),
                                        *(STDCModule(cout, cout, 1) for _ in range(n - 1))))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.channels = tuple(base * 4 * 2 ** i for i in range(len(layers)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class AttentionRefinement(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = conv_bn_relu(cin, cout, 3, bias=True)
        self.atten = nn.Sequential(nn.Conv2d(cout, cout, 1), nn.BatchNorm2d(cout), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x * self.atten(x.mean(dim=(2, 3), keepdim=True))


class FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = conv_bn_relu(cin, cout, 1, bias=True)
        self.atten = nn.Sequential(nn.Conv2d(cout, cout // 4, 1), nn.ReLU(inplace=True),
                                   nn.Conv2d(cout // 4, cout, 1), nn.Sigmoid())

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.conv(torch.cat([spatial, context], dim=1))
        return feat + feat * self.atten(feat.mean(dim=(2, 3), keepdim=True))


class STDCSeg(nn.Module):
    def __init__(self, num_classes: int, layers=(2, 2, 2)):
        super().__init__()
        self.backbone = STDCNet(layers=layers)
        c8, c16, c32 = self.backbone.channels
        self.arm16 = AttentionRefinement(c16, 128)
        self.arm32 = AttentionRefinement(c32, 128)
        self.conv_avg = conv_bn_relu(c32, 128, 1, bias=True)
        self.head32 = conv_bn_relu(128, 128, 3, bias=True)
        self.head16 = conv_bn_relu(128, 128, 3, bias=True)
        self.ffm = FeatureFusion(c8 + 128, 256)
        self.head = nn.Sequential(conv_bn_relu(256, 256, 3, bias=True),
                                  nn.Conv2d(256, num_classes, 1))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f8, f16, f32 = self.backbone(x)
        ctx = self.conv_avg(f32.mean(dim=(2, 3), keepdim=True))
        up32 = F.interpolate(self.arm32(f32) + ctx, size=f16.shape[-2:], mode="nearest")
        up32 = self.head32(up32)
        up16 = F.interpolate(self.arm16(f16) + up32, size=f8.shape[-2:], mode="nearest")
        up16 = self.head16(up16)
        y = self.head(self.ffm(f8, up16))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=True)


@register_model(
    "stdc1",
    paper="Rethinking BiSeNet For Real-time Semantic Segmentation (STDC1-Seg)",
    year=2021,
    input_size=(512, 1024),
    output_stride=32,
    published_params=8_290_000,
    published_classes=19,
    published_madds=24.83,
    source="PaddleSeg docs/model_zoo_overview.md summary table (Cityscapes, 19 classes, "
    "1024x512 input, i.e. STDC1-Seg50; the CVPR paper gives only the ImageNet backbone's "
    "8.44 M / 813 MFLOPs): STDC1-Seg50 8.29 M params, 24.83 GFLOPs as paddle.flops counts "
    "them, i.e. conv/linear multiply-adds plus a bias add per conv output and 2 ops per "
    "BatchNorm element (not 2 x MAdds)",
)
def stdc1(num_classes: int, pretrained_backbone: bool = False) -> nn.Module:
    """Trained from scratch: there is no local ImageNet STDC checkpoint to start from."""
    no_pretrained_backbone("stdc1", pretrained_backbone)
    return STDCSeg(num_classes)
