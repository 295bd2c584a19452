"""Structural tests of the DeepLabV3+ variants: output stride, ASPP kinds, KSAC sharing."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from bench.complexity import count_madds
from models import create_model
from models.aspp import ASPP_KINDS, shared_convs

MOBILE, RESNET = "deeplabv3plus_mobilenetv2", "deeplabv3plus_resnet50"
SIZE = (1, 3, 64, 64)


@functools.cache
def _counts(name: str, **kw) -> tuple[int, int]:
    torch.manual_seed(0)
    c = count_madds(create_model(name, num_classes=5, **kw), SIZE)
    return c.params, c.madds


def _count(name: str, **kw) -> tuple[int, int]:
    return _counts(name, **kw)


def _kernels3x3(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]


@pytest.mark.parametrize("name", [MOBILE, RESNET])
@pytest.mark.parametrize("os_", [8, 16, 32])
def test_output_stride_is_real(name, os_):
    torch.set_num_threads(1)
    model = create_model(name, num_classes=5, output_stride=os_).eval()
    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, 3, 64, 64))
    assert feats["out"].shape[-2:] == (64 // os_, 64 // os_)
    assert feats["low_level"].shape[-2:] == (16, 16)
    dilated = [
        m for m in model.backbone.modules() if isinstance(m, nn.Conv2d) and m.dilation[0] > 1
    ]
    if os_ == 32:
        assert not dilated, "output stride 32 must not trade any stride for dilation"
    else:
        assert dilated
    rates = sorted({m.dilation[0] for m in _kernels3x3(model.head.aspp)})
    assert rates == {8: [12, 24, 36], 16: [6, 12, 18], 32: [3, 6, 9]}[os_]


def test_aspp_is_the_reference_head():
    model = create_model(RESNET, num_classes=5, output_stride=32)  # OS only changes rates
    aspp = model.head.aspp
    assert len(aspp.convs) == 5  # 1x1, three atrous, image pooling
    assert all(m.out_channels == 256 for m in _kernels3x3(aspp))
    assert model.head.project[0].out_channels == 48
    assert model.head.classifier[0].in_channels == 304
    assert aspp.project[0].in_channels == 5 * 256


@pytest.mark.parametrize("name", [MOBILE, pytest.param(RESNET, marks=pytest.mark.slow)])
@pytest.mark.parametrize("kind", ["ds", "btn"])
def test_ds_and_btn_cut_params_and_madds(name, kind):
    p0, m0 = _count(name)
    p, m = _count(name, aspp=kind)
    assert p < p0 and m < m0


@pytest.mark.parametrize("kind", ["standard", "ds", "btn", "caspp1", "caspp3"])
def test_ksac_saves_exactly_the_shared_kernels(kind):
    torch.manual_seed(0)
    model = create_model(MOBILE, num_classes=5, aspp=kind, ksac=True)
    branches = list(model.head.aspp.convs)[1:-1]  # the atrous branches
    per_branch = [shared_convs(b) for b in branches]
    assert len({len(k) for k in per_branch}) == 1 and per_branch[0]
    for layer in zip(*per_branch):
        assert len({id(conv.weight) for conv in layer}) == 1  # one kernel per layer...
    atrous = [[m for m in _kernels3x3(b)] for b in branches]
    assert len({conv.dilation for conv in next(zip(*atrous))}) == len(branches)  # ...3 rates
    later = [k[1:] for k in atrous]  # CASPP's later bottlenecks stay per branch
    assert all(len({id(c.weight) for c in layer}) == len(branches) for layer in zip(*later))
    shared = sum(conv.weight.numel() for conv in per_branch[0])
    p0, m0 = _count(MOBILE, aspp=kind)
    p, m = _count(MOBILE, aspp=kind, ksac=True)
    assert p0 - p == (len(branches) - 1) * shared
    assert m == m0  # sharing saves weights, not multiply-adds


def test_ksac_trains_one_kernel():
    torch.set_num_threads(1)
    model = create_model(MOBILE, num_classes=3, ksac=True)
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    nn.functional.cross_entropy(model(x), y).backward()
    convs = [_kernels3x3(b)[0] for b in list(model.head.aspp.convs)[1:-1]]
    assert convs[0].weight.grad is not None and convs[1].weight.grad is convs[0].weight.grad
    tied = list(model.named_parameters(remove_duplicate=False))
    assert len(list(model.parameters())) == len(tied) - 2  # 3 rates, one 3x3 kernel


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_caspp_branch_widths(n):
    model = create_model(MOBILE, num_classes=5, aspp=f"caspp{n}")
    branch = model.head.aspp.convs[1]
    outs = [m.num_features for m in branch if isinstance(m, nn.BatchNorm2d)]
    assert outs == {1: [256], 2: [512, 256], 3: [1024, 512, 256], 4: [1024, 512, 256, 256]}[n]
    assert len(_kernels3x3(branch)) == n
    assert all(c.groups == c.in_channels for c in _kernels3x3(branch))  # depthwise 3x3s
    # the decoder's 3x3 is BTN's bottleneck, so CASPP-1 is BTN (the report's costs say so)
    btn = create_model(MOBILE, num_classes=5, aspp="btn")
    assert str(model.head.classifier[0]) == str(btn.head.classifier[0])


def test_ds_also_separates_the_decoder():
    model = create_model(MOBILE, num_classes=5, aspp="ds")
    depthwise = model.head.classifier[0][0]
    assert depthwise.groups == depthwise.in_channels == 304


@pytest.mark.parametrize("kind", ASPP_KINDS)
def test_every_kind_runs_at_odd_size(kind):
    torch.set_num_threads(1)
    model = create_model(MOBILE, num_classes=4, aspp=kind, ksac=kind == "btn").eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 45, 61)).shape == (1, 4, 45, 61)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="aspp"):
        create_model(MOBILE, num_classes=3, aspp="nope")
    with pytest.raises(ValueError, match="output_stride"):
        create_model(MOBILE, num_classes=3, output_stride=4)


def test_mobilenet_runs_with_the_reference_padding():
    """The reference pads each block's input, so the 1x1 expansion sees the padded map;
    the weights (names and shapes) stay torchvision's, so its checkpoint still loads."""
    from torchvision.models import mobilenet_v2

    backbone = create_model(MOBILE, num_classes=5).backbone
    tv = mobilenet_v2().features[:18].state_dict()
    ours = backbone.state_dict()
    assert list(ours) == list(tv) and all(ours[k].shape == tv[k].shape for k in tv)
    seen = []
    expand = backbone["4"].conv[0][0]  # first block of stage 4 (32 ch)
    expand.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    with torch.no_grad():
        backbone(torch.zeros(1, 3, 64, 64))
    assert seen == [(16 + 2, 16 + 2)]  # the stride-4 map, padded by the dilation (1)
    assert backbone["0"][0].padding == (0, 0)  # the reference's unpadded stem
