"""ENet (Paszke, Chaurasia, Kim, Culurciello 2016, arXiv:1606.02147).

Built as in the paper's Table 1 and the widely used PyTorch port (davidtvs/PyTorch-ENet):
an initial block (3x3/2 convolution with 13 filters concatenated with a max-pooled copy of
the input), bottlenecks with a 4x channel reduction whose main convolution is regular,
dilated or asymmetric (5x1 then 1x5), downsampling bottlenecks that keep max-pooling
indices, and a decoder that max-unpools with those indices. PReLU in the encoder, ReLU in
the decoder, spatial dropout 0.01 in stage 1 and 0.1 afterwards. ENet is one of the two
`cpu_default` models: ~0.36 M parameters and ~0.1 GMAdds at 128x128, so a 2-core CPU can
train it.
"""

from __future__ import annotations

import torch
from torch import nn

from models._common import PadCrop, no_pretrained_backbone
from models.registry import register_model


def _act(prelu: bool, channels: int) -> nn.Module:
    return nn.PReLU(channels) if prelu else nn.ReLU(inplace=True)


def _cba(cin: int, cout: int, kernel, prelu: bool, **kw) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, bias=False, **kw), nn.BatchNorm2d(cout), _act(prelu, cout)
    )


class InitialBlock(nn.Module):
    """3x3/2 conv to 13 channels || 2x2 max-pool of the RGB input -> 16 channels at 1/2."""

    def __init__(self, out_channels: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(3, out_channels - 3, 3, stride=2, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class Bottleneck(nn.Module):
    """Residual bottleneck: 1x1 reduce, main conv (regular/dilated/asymmetric), 1x1 expand."""

    def __init__(
        self,
        channels: int,
        dilation: int = 1,
        asymmetric: bool = False,
        dropout: float = 0.1,
        prelu: bool = True,
    ):
        super().__init__()
        mid = channels // 4
        if asymmetric:
            main = nn.Sequential(
                _cba(mid, mid, (5, 1), prelu, padding=(2, 0)),
                _cba(mid, mid, (1, 5), prelu, padding=(0, 2)),
            )
        else:
            main = _cba(mid, mid, 3, prelu, padding=dilation, dilation=dilation)
        self.branch = nn.Sequential(
            _cba(channels, mid, 1, prelu),
            main,
            _cba(mid, channels, 1, prelu),
            nn.Dropout2d(dropout),
        )
        self.act = _act(prelu, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.branch(x))


class DownBottleneck(nn.Module):
    """Stride-2 bottleneck; the main path max-pools (keeping indices) and zero-pads channels."""

    def __init__(self, cin: int, cout: int, dropout: float, prelu: bool = True):
        super().__init__()
        mid = cin // 4
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=True)
        self.branch = nn.Sequential(
            _cba(cin, mid, 2, prelu, stride=2),
            _cba(mid, mid, 3, prelu, padding=1),
            _cba(mid, cout, 1, prelu),
            nn.Dropout2d(dropout),
        )
        self.extra = cout - cin
        self.act = _act(prelu, cout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        main, idx = self.pool(x)
        ext = self.branch(x)
        n, _, h, w = main.shape
        main = torch.cat([main, main.new_zeros(n, self.extra, h, w)], dim=1)
        return self.act(main + ext), idx


class UpBottleneck(nn.Module):
    """x2 bottleneck; the main path is a 1x1 conv then max-unpooling with the encoder's indices."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.1):
        super().__init__()
        mid = cin // 4
        self.main = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.unpool = nn.MaxUnpool2d(2)
        self.branch = nn.Sequential(
            _cba(cin, mid, 1, False),
            nn.ConvTranspose2d(mid, mid, 2, stride=2, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.Dropout2d(dropout),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        main = self.unpool(self.main(x), idx)
        return self.act(main + self.branch(x))


def _stage(channels: int) -> nn.Sequential:
    """Stages 2 and 3 of Table 1: regular, dil 2, asym 5, dil 4, regular, dil 8, asym 5, dil 16."""
    spec = [
        (1, False),
        (2, False),
        (1, True),
        (4, False),
        (1, False),
        (8, False),
        (1, True),
        (16, False),
    ]
    return nn.Sequential(*[Bottleneck(channels, d, a, 0.1) for d, a in spec])


class ENet(nn.Module):
    """ENet at total stride 8; expects H, W divisible by 8 (the registry wraps it in PadCrop)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.initial = InitialBlock(16)
        self.down1 = DownBottleneck(16, 64, 0.01)
        self.stage1 = nn.Sequential(*[Bottleneck(64, dropout=0.01) for _ in range(4)])
        self.down2 = DownBottleneck(64, 128, 0.1)
        self.stage2 = _stage(128)
        self.stage3 = _stage(128)
        self.up4 = UpBottleneck(128, 64)
        self.stage4 = nn.Sequential(*[Bottleneck(64, prelu=False) for _ in range(2)])
        self.up5 = UpBottleneck(64, 16)
        self.stage5 = Bottleneck(16, prelu=False)
        self.fullconv = nn.ConvTranspose2d(
            16, num_classes, 3, stride=2, padding=1, output_padding=1, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.initial(x)
        x, idx1 = self.down1(x)
        x = self.stage1(x)
        x, idx2 = self.down2(x)
        x = self.stage3(self.stage2(x))
        x = self.stage4(self.up4(x, idx2))
        x = self.stage5(self.up5(x, idx1))
        return self.fullconv(x)


@register_model(
    "enet",
    paper="ENet: A Deep Neural Network Architecture for Real-Time Semantic Segmentation",
    year=2016,
    input_size=(360, 480),
    output_stride=8,
    published_params=370_000,
    published_classes=12,
    cpu_default=True,
    source="Paszke et al. 2016 (arXiv:1606.02147), hardware-requirements table: "
    "0.37 M params, 3.83 GFLOPs at 640x360",
    published_madds_at=((360, 640), 3.83),
)
def enet(num_classes: int, pretrained_backbone: bool = False) -> nn.Module:
    no_pretrained_backbone("enet", pretrained_backbone)
    return PadCrop(ENet(num_classes), multiple=8)
