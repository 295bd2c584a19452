"""LR-ASPP on MobileNetV3-Large (Howard et al. 2019): torchvision's model, unchanged.

The modern efficient reference point of the zoo. torchvision's implementation is the one
its published counts describe (3,221,538 parameters, 2.086 GFLOPs at 520x520 for 21
classes), so we wrap it rather than rewrite it: MobileNetV3-Large with its last stage
dilated (output stride 16), the lite R-ASPP head (1x1 conv + squeeze-excite-style global
gating on the stride-16 features, plus a stride-8 low-level classifier).
"""

from __future__ import annotations

from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights
from torchvision.models.segmentation import lraspp_mobilenet_v3_large

from models._common import load_imagenet
from models._tv_wrap import OutOnly
from models.registry import register_model


@register_model(
    "lraspp_mobilenetv3",
    paper="Searching for MobileNetV3 (LR-ASPP head)",
    year=2019,
    input_size=(520, 520),
    output_stride=16,
    published_params=3_221_538,
    published_classes=21,
    published_madds=2.086,
    source="torchvision LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1.meta: "
    "num_params 3,221,538; _ops 2.086 GFLOPs at 520x520",
)
def lraspp_mobilenetv3(num_classes: int, pretrained_backbone: bool = False) -> nn.Module:
    net = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)
    if pretrained_backbone:
        load_imagenet(net.backbone, MobileNet_V3_Large_Weights.IMAGENET1K_V1, prefix="features.")
    return OutOnly(net)
