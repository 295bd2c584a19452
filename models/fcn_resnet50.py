"""FCN on a dilated ResNet-50: torchvision's `fcn_resnet50`, unchanged.

This is the FCN variant the edge-deployment report benchmarks, and torchvision's model is
the reference everyone measures, so we wrap it instead of re-implementing it: backbone
ResNet-50 with the last two strides replaced by dilation (output stride 8), FCNHead
(3x3 conv 2048 -> 512, BN, ReLU, dropout, 1x1 to the classes), bilinear upsampling.

`aux_loss=True` by default: torchvision's published COCO/VOC checkpoint - and therefore its
documented `num_params` (35,322,218) and `_ops` (152.717 GFLOPs at 520x520) - includes the
auxiliary FCNHead on layer3, which runs in every forward. Keeping it makes our counts match
torchvision's exactly. Pass `aux_loss=False` for the lean model (2,365,205 fewer parameters
at 21 classes, 9.99 GMAdds less at 520x520); the aux output is never returned either way.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import ResNet50_Weights
from torchvision.models.segmentation import fcn_resnet50 as tv_fcn_resnet50

from models._common import load_imagenet
from models._tv_wrap import OutOnly
from models.registry import register_model


@register_model(
    "fcn_resnet50",
    paper="Fully Convolutional Networks for Semantic Segmentation (torchvision ResNet-50 FCN)",
    year=2015,
    input_size=(520, 520),
    output_stride=8,
    published_params=35_322_218,
    published_classes=21,
    published_madds=152.717,
    source="torchvision FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1.meta: num_params "
    "35,322,218; _ops 152.717 GFLOPs at 520x520 (both with the aux head)",
)
def fcn_resnet50(
    num_classes: int, aux_loss: bool = True, pretrained_backbone: bool = False
) -> nn.Module:
    net = tv_fcn_resnet50(weights=None, weights_backbone=None, num_classes=num_classes,
                          aux_loss=aux_loss)
    if pretrained_backbone:
        load_imagenet(net.backbone, ResNet50_Weights.IMAGENET1K_V1)
    return OutOnly(net)
