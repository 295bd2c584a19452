"""`fastlinknet`: our definition of the smartphone-segmentation thesis' "FastLinkNet".

The thesis names a FastLinkNet without specifying it, so this is OUR documented
interpretation, not a published architecture: LinkNet (models/linknet.py, ResNet-18
encoder, additive links) whose decoder blocks are depthwise-separable - the 3x3 full
convolution of each block (and of the final block) becomes a depthwise 3x3 (transposed when
it upsamples) followed by the block's 1x1 convolutions acting as the pointwise part - and
whose decoder widths are scaled by `width` (default 0.5). The encoder keeps ResNet-18's
widths so ImageNet weights still load; skip links get a 1x1 projection when the decoder is
narrower than the encoder. There is no published parameter count to compare with.
"""

from __future__ import annotations

from torch import nn

from models._common import PadCrop
from models.linknet import LinkNet, cbr
from models.registry import register_model


def _dw(channels: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3: transposed x2 when upsampling, regular otherwise; BN + ReLU."""
    if stride == 2:
        conv = nn.ConvTranspose2d(
            channels,
            channels,
            3,
            stride=2,
            padding=1,
            output_padding=1,
            groups=channels,
            bias=False,
        )
    else:
        conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


def separable_decoder_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    """1x1 (cin -> cin/4), depthwise 3x3 (x`stride`), 1x1 (cin/4 -> cout)."""
    mid = max(8, cin // 4)
    return nn.Sequential(cbr(cin, mid, 1), _dw(mid, stride), cbr(mid, cout, 1))


def separable_final_block(cin: int, mid: int, num_classes: int) -> nn.Sequential:
    """Depthwise 3x3 full conv x2 + 1x1, depthwise 3x3 + 1x1, 2x2 full conv x2 to classes."""
    return nn.Sequential(
        _dw(cin, 2),
        cbr(cin, mid, 1),
        _dw(mid, 1),
        cbr(mid, mid, 1),
        nn.ConvTranspose2d(mid, num_classes, 2, stride=2),
    )


@register_model(
    "fastlinknet",
    paper="FastLinkNet (named in the smartphone-segmentation thesis; our definition)",
    year=2017,
    input_size=(360, 480),
    output_stride=32,
    source="our definition: LinkNet + depthwise-separable decoder + width multiplier",
)
def fastlinknet(
    num_classes: int, width: float = 0.5, pretrained_backbone: bool = False
) -> nn.Module:
    net = LinkNet(
        num_classes,
        pretrained_backbone,
        block=separable_decoder_block,
        final=separable_final_block,
        width=width,
    )
    return PadCrop(net, multiple=32)
