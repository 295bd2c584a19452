"""LinkNet (Chaurasia & Culurciello 2017, arXiv:1707.03718) with a ResNet-18 encoder.

The paper's point is the *link*: each encoder block's output is added (not concatenated) to
the matching decoder block's output, so the decoder can stay tiny. Decoder block (m -> n):
1x1 conv m -> m/4, 3x3 full (transposed) conv x2 m/4 -> m/4, 1x1 conv m/4 -> n, each with
BN + ReLU. Final block: 3x3 full conv x2 (64 -> 32), 3x3 conv (32 -> 32), 2x2 full conv x2
(32 -> classes). The encoder is torchvision's ResNet-18, whose first stage does not
downsample, so `decoder1` does not upsample either and the total stride is 32 (the paper
counts 11.5 M parameters). Inputs whose sides are not multiples of 32 (CamVid's 360x480)
are zero-padded and the logits cropped back, so the additive links always line up.

`LinkNet` is parametrised by a decoder-block factory and a width so `fastlinknet`
(models/fastlinknet.py) can reuse it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from models._backbones import resnet
from models._common import PadCrop
from models.registry import register_model


def cbr(cin: int, cout: int, k: int, **kw) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, bias=False, **kw), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def tbr(cin: int, cout: int, k: int, stride: int, **kw) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, k, stride=stride, bias=False, **kw),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def decoder_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    """LinkNet decoder block: 1x1 (m -> m/4), 3x3 full conv (stride), 1x1 (m/4 -> n)."""
    mid = cin // 4
    up = (
        tbr(mid, mid, 3, 2, padding=1, output_padding=1)
        if stride == 2
        else cbr(mid, mid, 3, padding=1)
    )
    return nn.Sequential(cbr(cin, mid, 1), up, cbr(mid, cout, 1))


def final_block(cin: int, mid: int, num_classes: int) -> nn.Sequential:
    """3x3 full conv x2 (cin -> mid), 3x3 conv, 2x2 full conv x2 to the classes."""
    return nn.Sequential(
        tbr(cin, mid, 3, 2, padding=1, output_padding=1),
        cbr(mid, mid, 3, padding=1),
        nn.ConvTranspose2d(mid, num_classes, 2, stride=2),
    )


class LinkNet(nn.Module):
    """ResNet-18 encoder, additive skip links, 4 decoder blocks, 2 final full convolutions."""

    def __init__(
        self,
        num_classes: int,
        pretrained_backbone: bool = False,
        block: Callable[[int, int, int], nn.Module] = decoder_block,
        final: Callable[[int, int, int], nn.Module] | None = None,
        width: float = 1.0,
    ):
        super().__init__()
        layers = {f"layer{i}": str(i) for i in range(1, 5)}
        self.encoder = resnet(18, pretrained_backbone, return_layers=layers)
        enc = [64, 128, 256, 512]
        dec = [max(8, int(round(c * width))) for c in (64, 64, 128, 256)]
        # decoder_i: (encoder_4 or decoder_{i+1}) -> encoder_{i-1}'s width (64 for i = 1);
        # link_i adds encoder_i to decoder_{i+1}'s output (a 1x1 projection if widths differ)
        dec_in = [*dec[1:], enc[3]]
        self.decoder = nn.ModuleList(block(dec_in[i], dec[i], 1 if i == 0 else 2) for i in range(4))
        self.link = nn.ModuleList(
            nn.Identity() if dec[i + 1] == enc[i] else cbr(enc[i], dec[i + 1], 1) for i in range(3)
        )
        final = final or final_block
        self.final = final(dec[0], max(8, int(round(32 * width))), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = list(self.encoder(x).values())  # strides 4, 8, 16, 32
        d = self.decoder[3](e[3])
        for i in (2, 1, 0):
            d = self.decoder[i](d + self.link[i](e[i]))
        return self.final(d)


@register_model(
    "linknet",
    paper="LinkNet: Exploiting Encoder Representations for Efficient Semantic Segmentation",
    year=2017,
    input_size=(360, 480),
    output_stride=32,
    published_params=11_500_000,
    published_classes=12,
    source="Chaurasia & Culurciello 2017 (arXiv:1707.03718), comparison of operations and "
    "parameters: 11.5 M params, 21.2 GFLOPs at 640x360",
    published_madds_at=((360, 640), 21.2),
)
def linknet(num_classes: int, pretrained_backbone: bool = False) -> nn.Module:
    return PadCrop(LinkNet(num_classes, pretrained_backbone), multiple=32)
