"""torchvision ImageNet backbones, trimmed to feature extractors, with a controllable stride.

We build on torchvision rather than re-implementing ResNet/VGG/MobileNetV2 so our
backbones are bit-for-bit the ones everyone else benchmarks, and so `pretrained_backbone`
can load torchvision's ImageNet checkpoints unchanged (through `load_imagenet`: hash-checked,
no pickle, never through torchvision's downloader). Only two things are added: taking
intermediate feature maps (`IntermediateLayerGetter`) and trading the last strides for
dilation (`output_stride`), which torchvision's ResNet supports natively and its
MobileNetV2 does not, so for that one we patch the depthwise convolutions in place the way
the DeepLabV3+ reference implementation (VainF/DeepLabV3Plus-Pytorch) builds it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers

from models._common import load_imagenet

_RESNETS = {
    18: (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1),
    50: (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1),
}


def dilation_flags(output_stride: int) -> list[bool]:
    """torchvision's `replace_stride_with_dilation` for an output stride of 8, 16 or 32."""
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    return {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}[
        output_stride
    ]


def resnet(
    depth: int, pretrained: bool = False, output_stride: int = 32, return_layers=None
) -> nn.Module:
    """ResNet-`depth` without its classifier, returning the named `return_layers` as a dict."""
    builder, weights = _RESNETS[depth]
    flags = dilation_flags(output_stride)
    if depth < 50 and any(flags):
        raise ValueError("torchvision's BasicBlock ResNets do not support dilation")
    net = builder(weights=None, replace_stride_with_dilation=flags if depth >= 50 else None)
    if pretrained:
        load_imagenet(net, weights)
    return IntermediateLayerGetter(net, return_layers or {"layer4": "out"})


def _vgg_features(batch_norm: bool) -> nn.Sequential:
    """torchvision's VGG-16 conv layers and init, without building the 120 M-parameter
    classifier we would throw away (that alone takes seconds to initialise on a CPU)."""
    features = make_layers(vgg_cfgs["D"], batch_norm=batch_norm)
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return features


def vgg16_bn_features(pretrained: bool = False) -> nn.Sequential:
    """VGG-16 (with BatchNorm) convolutional part: 13 conv-BN-ReLU, 5 max-pools."""
    features = _vgg_features(batch_norm=True)
    if pretrained:
        load_imagenet(features, tvm.VGG16_BN_Weights.IMAGENET1K_V1, prefix="features.")
    return features


def vgg16(pretrained: bool = False) -> tuple[nn.Sequential, nn.Sequential | None]:
    """Plain VGG-16 (no BatchNorm), as FCN used: (features, classifier or None).

    The classifier (fc6/fc7 as Linear layers) is only built when its ImageNet weights are
    wanted, so FCN can convolutionalise them.
    """
    if not pretrained:
        return _vgg_features(batch_norm=False), None
    net = tvm.vgg16(weights=None)
    load_imagenet(net, tvm.VGG16_Weights.IMAGENET1K_V1)
    return net.features, net.classifier


def _dilate_mobilenet_v2(features: nn.Sequential, output_stride: int) -> None:
    """Replace strides beyond `output_stride` with dilation in MobileNetV2 `features`.

    Same rule as ResNet's `replace_stride_with_dilation`: the first block of a stage whose
    stride is removed keeps the previous dilation, the following blocks use the new one.
    """
    stride, dilation = 1, 1
    for block in features:
        convs = [m for m in block.modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] == 3]
        if not convs:  # 1x1 blocks (none in features[:18]) have nothing to dilate
            continue
        conv = convs[0]
        s = conv.stride[0]
        if s == 2 and stride >= output_stride:
            conv.stride = (1, 1)
            conv.dilation = (dilation, dilation)
            conv.padding = (dilation, dilation)
            dilation *= 2
            continue
        if s == 2:
            stride *= 2
        conv.dilation = (dilation, dilation)
        conv.padding = (dilation, dilation)


class FixedPaddingBlock(nn.Module):
    """A torchvision inverted-residual block run the DeepLabV3+ reference's way: the input
    is zero-padded by the depthwise conv's dilation *before* the block, so the 1x1 expansion
    also runs on the padded map (and pads with ReLU6(BN(0)), not zeros), and the depthwise
    conv itself pads nothing. Same weights, same output size; about 15 % more backbone
    MAdds at OS 16, which is what the DeepLabV3+ compression report counted."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.conv = block.conv
        self.use_res_connect = block.use_res_connect
        self.out_channels = block.out_channels
        depthwise = _depthwise(block)
        self.pad = depthwise.dilation[0]
        depthwise.padding = (0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.pad(x, (self.pad,) * 4))
        return x + y if self.use_res_connect else y


def _depthwise(block: nn.Module) -> nn.Conv2d:
    return next(m for m in block.modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] == 3)


def _reference_padding(features: nn.Sequential) -> None:
    """VainF/DeepLabV3Plus-Pytorch's MobileNetV2 (network/backbone/mobilenetv2.py): an
    unpadded stem conv and `FixedPaddingBlock` inverted residuals."""
    features[0][0].padding = (0, 0)
    for i in range(1, len(features)):
        if any(isinstance(m, nn.Conv2d) and m.kernel_size[0] == 3 for m in features[i].modules()):
            features[i] = FixedPaddingBlock(features[i])


def mobilenet_v2(
    pretrained: bool = False,
    output_stride: int = 32,
    return_layers=None,
    reference_padding: bool = False,
) -> nn.Module:
    """MobileNetV2 `features` up to block 17 (no final 1x1-to-1280) as a dict extractor.

    The default returns stride-4 'low_level' (24 ch, after block 3) and 'out' (320 ch), the
    DeepLabV3+ reference's split. Block i ends stride 2/4/8/16/32 at i = 1/3/6/13/17.
    `reference_padding` builds the DeepLabV3+ reference's padding (`_reference_padding`);
    the weights, and so the ImageNet checkpoint, are unchanged.
    """
    dilation_flags(output_stride)  # validates
    features = tvm.mobilenet_v2(weights=None).features
    if pretrained:
        load_imagenet(features, tvm.MobileNet_V2_Weights.IMAGENET1K_V1, prefix="features.")
    _dilate_mobilenet_v2(features, output_stride)
    if reference_padding:
        _reference_padding(features)
    return IntermediateLayerGetter(features, return_layers or {"3": "low_level", "17": "out"})
