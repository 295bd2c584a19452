"""ASPP and its compressed variants, for DeepLabV3+ (models/deeplabv3plus.py).

The standard module is the DeepLabV3+ reference reimplementation's (VainF/
DeepLabV3Plus-Pytorch, network/_deeplab.py, itself torchvision's): a 1x1 branch, three 3x3
atrous branches, an image-pooling branch, each conv-BN-ReLU to 256 channels, concatenated
and projected back to 256 by a 1x1 conv-BN-ReLU with dropout 0.1. The variants change only
what a 3x3 atrous convolution is, which is exactly what the DeepLabV3+ compression report
varies. Its parameter and MAdd columns (256x256, 21 classes; asserted row by row in
tests/models/test_zoo_dlv3p_fidelity.py) pin the definitions below:

* `ds`  - depthwise-separable: a depthwise 3x3 atrous conv then a 1x1 pointwise conv, with
  no BN between them, as the reference repo's `convert_to_separable_conv` builds it.
* `btn` - bottleneck: 1x1 reduce (to out/4) - BN - ReLU - *depthwise* 3x3 atrous - BN - ReLU
  - 1x1 expand. A dense 3x3 at out/4 would cost 4 x 36 k parameters more than the report
  (MobileNetV2 2.61 M instead of 2.46 M), a 3x3-free bottleneck 8 k more (2.47 M).
* `caspp1`..`caspp4` - the report's "compressed ASPP" (CASPP-n): every atrous branch
  becomes a stack of the bottleneck above (each followed by BN-ReLU), with output widths
  CASPP-1: [N]; CASPP-2: [2N, N]; CASPP-3: [4N, 2N, N]; CASPP-4: [4N, 2N, N, N], N = 256,
  each bottleneck reducing to its own output/4. CASPP-1 is therefore BTN (the report gives
  both identical costs). Every 3x3 of a branch uses the branch's rate; the cost figures
  cannot tell, and models/deeplabv3plus.py makes the decoder's 3x3 a bottleneck too.

`ksac=True` is Kernel-Sharing Atrous Convolution (Huang et al. 2019, arXiv:1903.11816): the
atrous branches share the weights of their *first block* (the same `nn.Parameter` objects
at every rate) and differ only in dilation; BNs stay per branch. For ST that block is the
single 3x3 kernel, as in the KSAC paper; for DS the depthwise and pointwise kernels; for BTN
and CASPP-n the first bottleneck's three convolutions. This is what the report's KSAC
parameter counts say: they save exactly two copies of each branch's first bottleneck (for
CASPP-3/4 the same 0.70 M on MobileNetV2 whether or not a fourth block follows). MAdds are
unchanged. The shared convs stay ordinary `nn.Conv2d` modules so MAdd counters, pruning and
quantisation tools see them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ASPP_KINDS = ("standard", "ds", "btn", "caspp1", "caspp2", "caspp3", "caspp4")
_CASPP_WIDTHS = {1: [1], 2: [2, 1], 3: [4, 2, 1], 4: [4, 2, 1, 1]}  # multiples of N_out


def cbr(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def separable(cin: int, cout: int, dilation: int) -> nn.Sequential:
    """Depthwise 3x3 atrous + pointwise 1x1, no norm between (the reference repo's form)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False),
        nn.Conv2d(cin, cout, 1, bias=False),
    )


def bottleneck(cin: int, cout: int, dilation: int) -> nn.Sequential:
    """1x1 reduce to cout/4, depthwise 3x3 atrous, 1x1 expand (BN-ReLU inside, none after)."""
    mid = max(1, cout // 4)
    return nn.Sequential(
        cbr(cin, mid, 1),
        nn.Sequential(
            nn.Conv2d(mid, mid, 3, padding=dilation, dilation=dilation, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
        ),
        nn.Conv2d(mid, cout, 1, bias=False),
    )


def conv3x3(kind: str, cin: int, cout: int, dilation: int = 1) -> nn.Module:
    """What a 3x3 (atrous) convolution becomes under `kind`; BN-ReLU is added by the caller."""
    if kind == "ds":
        return separable(cin, cout, dilation)
    if kind == "btn":
        return bottleneck(cin, cout, dilation)
    return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False)


def atrous_branch(kind: str, cin: int, cout: int, dilation: int) -> nn.Sequential:
    """One ASPP atrous branch (cin -> cout at rate `dilation`) of the given kind."""
    if kind not in ASPP_KINDS:
        raise ValueError(f"unknown aspp {kind!r}; valid choices: {', '.join(ASPP_KINDS)}")
    if kind.startswith("caspp"):
        layers, c = [], cin
        for mult in _CASPP_WIDTHS[int(kind[-1])]:
            layers += [
                bottleneck(c, mult * cout, dilation),
                nn.BatchNorm2d(mult * cout),
                nn.ReLU(inplace=True),
            ]
            c = mult * cout
        return nn.Sequential(*layers)
    return nn.Sequential(
        conv3x3(kind, cin, cout, dilation), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def shared_convs(branch: nn.Sequential) -> list[nn.Conv2d]:
    """The convolutions KSAC shares across branches: those of the branch's first block."""
    return [m for m in branch[0].modules() if isinstance(m, nn.Conv2d)]


def share_atrous_kernels(branches: list[nn.Sequential]) -> None:
    """KSAC: make every branch's first-block convs use the first branch's weights."""
    first = shared_convs(branches[0])
    for branch in branches[1:]:
        for ref, conv in zip(first, shared_convs(branch), strict=True):
            conv.weight = ref.weight


class ASPPPooling(nn.Sequential):
    """Image-level features: global average pool, 1x1 conv-BN-ReLU, broadcast back."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), *cbr(cin, cout, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(
        self,
        in_channels: int,
        rates: tuple[int, ...] = (6, 12, 18),
        out_channels: int = 256,
        kind: str = "standard",
        ksac: bool = False,
    ):
        super().__init__()
        atrous = [atrous_branch(kind, in_channels, out_channels, r) for r in rates]
        if ksac:
            share_atrous_kernels(atrous)
        self.convs = nn.ModuleList(
            [cbr(in_channels, out_channels, 1), *atrous, ASPPPooling(in_channels, out_channels)]
        )
        self.project = nn.Sequential(
            *cbr(len(self.convs) * out_channels, out_channels, 1), nn.Dropout(0.1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))
