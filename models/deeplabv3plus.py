"""DeepLabV3+ (Chen et al. 2018, arXiv:1802.02611) as in the widely used PyTorch
reimplementation (VainF/DeepLabV3Plus-Pytorch), on ResNet-50 or MobileNetV2.

Head, as in the reference: ASPP on the backbone's last feature map (rates 6/12/18 at
output stride 16, doubled at 8; we halve them to 3/6/9 at 32, where the reference has no
setting), upsampled bilinearly to the stride-4 low-level features, which are projected to
48 channels by 1x1 conv-BN-ReLU; concatenation (304 channels), 3x3 conv-BN-ReLU to 256,
1x1 to the classes, bilinear upsampling to the input size (so any input size works).
Kaiming-normal init for the head, torchvision's for the backbone.

Backbones come from torchvision (models/_backbones.py). `output_stride`: 32 keeps every
stride; 16 replaces the last stride with dilation, 8 the last two. ResNet-50's low-level
features are layer1 (256 ch), MobileNetV2's are block 3 (24 ch) and its 1x1-to-1280 layer
is dropped (ASPP sees 320 channels), both as in the reference.

MobileNetV2 is run with the reference's padding (models/_backbones.py, `FixedPaddingBlock`):
the reference pads each inverted residual's input, so its 1x1 expansions run on the padded
map; that is 0.09 of the 4.29 GMAdds the DeepLabV3+ compression report counts at 256x256.

`aspp` and `ksac` select the compressed heads of models/aspp.py. `ds` and `btn` also apply
to the decoder's 3x3 convolution (the reference's `--separable_conv` converts the whole
head), and so do the CASPP variants, whose decoder 3x3 is BTN's bottleneck: in the report
CASPP-1 costs exactly what BTN costs (2.46 M / 1.03 G on MobileNetV2, 25.39 M / 8.72 G on
ResNet-50), which a standard decoder conv (+0.63 M, +2.6 G) cannot give.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models._backbones import mobilenet_v2, resnet
from models._common import init_weights
from models.aspp import ASPP, ASPP_KINDS, conv3x3
from models.registry import register_model

DEFAULT_RATES = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}


class DeepLabHeadV3Plus(nn.Module):
    def __init__(
        self,
        in_channels: int,
        low_level_channels: int,
        num_classes: int,
        rates: tuple[int, ...],
        aspp: str = "standard",
        ksac: bool = False,
    ):
        super().__init__()
        self.project = nn.Sequential(
            nn.Conv2d(low_level_channels, 48, 1, bias=False),
            nn.BatchNorm2d(48),
            nn.ReLU(inplace=True),
        )
        self.aspp = ASPP(in_channels, rates, 256, kind=aspp, ksac=ksac)
        decoder_kind = {"standard": "standard", "ds": "ds"}.get(aspp, "btn")
        self.classifier = nn.Sequential(
            conv3x3(decoder_kind, 48 + 256, 256),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, num_classes, 1),
        )
        init_weights(self)

    def forward(self, low_level: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        low = self.project(low_level)
        high = F.interpolate(
            self.aspp(out), size=low.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.classifier(torch.cat([low, high], dim=1))


class DeepLabV3Plus(nn.Module):
    """`backbone(x)` returns {"low_level": stride-4 map, "out": stride-`output_stride` map}."""

    def __init__(self, backbone: nn.Module, head: DeepLabHeadV3Plus):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x)
        y = self.head(f["low_level"], f["out"])
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _build(
    backbone: str,
    num_classes: int,
    output_stride: int = 16,
    aspp: str = "standard",
    ksac: bool = False,
    atrous_rates: tuple[int, ...] | None = None,
    pretrained_backbone: bool = False,
) -> DeepLabV3Plus:
    if aspp not in ASPP_KINDS:
        raise ValueError(f"unknown aspp {aspp!r}; valid choices: {', '.join(ASPP_KINDS)}")
    if output_stride not in DEFAULT_RATES:
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    rates = tuple(atrous_rates or DEFAULT_RATES[output_stride])
    if backbone == "resnet50":
        layers = {"layer1": "low_level", "layer4": "out"}
        body = resnet(50, pretrained_backbone, output_stride, return_layers=layers)
        channels = (2048, 256)
    else:
        body = mobilenet_v2(pretrained_backbone, output_stride, reference_padding=True)
        channels = (320, 24)
    head = DeepLabHeadV3Plus(*channels, num_classes, rates, aspp=aspp, ksac=ksac)
    return DeepLabV3Plus(body, head)


_META = dict(
    paper="Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation",
    year=2018,
    input_size=(513, 513),
    output_stride=16,
)


@register_model(
    "deeplabv3plus_resnet50",
    published_madds=62.7,
    source="VainF/DeepLabV3Plus-Pytorch README, Pascal VOC table: 62.7 GFLOPs at 513x513, "
    "OS 16, 21 classes (no parameter count published for ResNet-50)",
    **_META,
)
def deeplabv3plus_resnet50(num_classes: int, **kwargs) -> nn.Module:
    """Keyword arguments: output_stride, aspp, ksac, atrous_rates, pretrained_backbone."""
    return _build("resnet50", num_classes, **kwargs)


@register_model(
    "deeplabv3plus_mobilenetv2",
    published_madds=17.0,
    source="VainF/DeepLabV3Plus-Pytorch README, Pascal VOC table: 17.0 GFLOPs at 513x513, "
    "OS 16, 21 classes (no parameter count published)",
    **_META,
)
def deeplabv3plus_mobilenetv2(num_classes: int, **kwargs) -> nn.Module:
    """Keyword arguments: output_stride, aspp, ksac, atrous_rates, pretrained_backbone."""
    return _build("mobilenetv2", num_classes, **kwargs)
