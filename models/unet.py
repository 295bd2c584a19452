"""U-Net (Ronneberger, Fischer, Brox 2015, arXiv:1505.04597) and the narrow `unet_small`.

The paper's topology: four 2x2 max-pool downsamplings, two 3x3 convolutions per level,
channel width doubling per level from `base_channels` (64 in the paper), 2x2 up-convolutions
that halve the width, skip concatenation, 1x1 classifier. Two deliberate modernisations,
the same ones as the common PyTorch port (milesial/Pytorch-UNet): padded ("same")
convolutions, so the output is the input's size instead of the paper's cropped valid-
convolution tiles, and BatchNorm after each convolution, so it trains from scratch without
the paper's careful init. The paper gives no parameter count; at base 64 this is ~31.0 M.

`unet_small` is `unet` with `base_channels=16` (1/16 the parameters and MAdds): the second
`cpu_default` model, cheap enough to train on a 2-core CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from models._common import PadCrop, no_pretrained_backbone
from models.registry import register_model


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Up(nn.Module):
    """2x2 up-convolution halving the width, concatenation with the skip, two 3x3 convs."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
        self.conv = double_conv(cin // 2 + cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """U-Net with `depth` poolings; expects H, W divisible by 2**depth (wrapped in PadCrop)."""

    def __init__(self, num_classes: int, base_channels: int = 64, depth: int = 4):
        super().__init__()
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.inc = double_conv(3, widths[0])
        self.pool = nn.MaxPool2d(2)
        self.down = nn.ModuleList(double_conv(a, b) for a, b in zip(widths, widths[1:]))
        self.up = nn.ModuleList(Up(b, a) for a, b in reversed(list(zip(widths, widths[1:]))))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for block in self.down:
            skips.append(block(self.pool(skips[-1])))
        x = skips.pop()
        for block in self.up:
            x = block(x, skips.pop())
        return self.head(x)


_META = dict(
    paper="U-Net: Convolutional Networks for Biomedical Image Segmentation",
    year=2015,
    output_stride=16,
    source="Ronneberger et al. 2015, arXiv:1505.04597 (no parameter count published)",
)


@register_model("unet", input_size=(512, 512), **_META)
def unet(
    num_classes: int, base_channels: int = 64, depth: int = 4, pretrained_backbone: bool = False
) -> nn.Module:
    no_pretrained_backbone("unet", pretrained_backbone)
    return PadCrop(UNet(num_classes, base_channels, depth), multiple=2**depth)


@register_model("unet_small", input_size=(512, 512), cpu_default=True, base_channels=16, **_META)
def unet_small(num_classes: int, base_channels: int = 16, **kwargs) -> nn.Module:
    """`unet` at base width 16: the CPU-default U-Net."""
    return unet(num_classes, base_channels=base_channels, **kwargs)
