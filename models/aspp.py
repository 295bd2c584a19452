"""ASPP and its compressed variants, for DeepLabV3+ (models/deeplabv3plus.py).

The standard module is the DeepLabV3+ reference reimplementation's (VainF/
DeepLabV3Plus-Pytorch, itself torchvision's): a 1x1 branch, three 3x3 atrous branches, an
image-pooling branch, each conv-BN-ReLU to 256 channels, concatenated and projected back
to 256 by a 1x1 conv-BN-ReLU with dropout 0.1. The variants change only what a 3x3 atrous
convolution is, which is exactly what the compression papers we reproduce vary:

* `ds`  - depthwise-separable: a depthwise 3x3 atrous conv then a 1x1 pointwise conv, with
  no BN between them, as the reference repo's `convert_to_separable_conv` builds it.
* `btn` - bottleneck: 1x1 reduce (to out/4) - BN - ReLU - 3x3 atrous - BN - ReLU - 1x1
  expand. The reduction width is not fixed by the issue; we use ResNet's 4x.
* `caspp1`..`caspp4` - the "compressed ASPP" (CASPP-n) of the DeepLabV3+ compression
  report: every atrous branch becomes a stack of the bottleneck above (each followed by
  BN-ReLU), with output widths CASPP-1: [N]; CASPP-2: [2N, N]; CASPP-3: [4N, 2N, N];
  CASPP-4: [4N, 2N, N, N], N = 256. Every 3x3 of a branch uses the branch's rate.

`ksac=True` is Kernel-Sharing Atrous Convolution (Huang et al. 2019, arXiv:1903.11816): the
atrous branches share one 3x3 kernel per layer position (the same `nn.Parameter` object is
the weight of every branch's conv at that position) and differ only in dilation; BNs and
1x1 convolutions stay per branch, as in the KSAC paper. MAdds are unchanged, parameters
drop by (n_rates - 1) x the shared kernels. The shared convs stay ordinary `nn.Conv2d`
modules so MAdd counters, pruning and quantisation tools see them.
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
    """1x1 reduce to cout/4, 3x3 atrous, 1x1 expand (BN-ReLU inside, none after)."""
    mid = max(1, cout // 4)
    return nn.Sequential(
        cbr(cin, mid, 1),
        cbr(mid, mid, 3, dilation),
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


def _kernels(branch: nn.Module) -> list[nn.Conv2d]:
    return [m for m in branch.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]


def share_atrous_kernels(branches: list[nn.Module]) -> None:
    """KSAC: make every branch's k-th 3x3 conv use the first branch's k-th kernel."""
    first = _kernels(branches[0])
    for branch in branches[1:]:
        for ref, conv in zip(first, _kernels(branch), strict=True):
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
