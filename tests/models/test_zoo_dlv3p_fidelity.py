"""Our DeepLabV3+ variants against the cost columns of the DeepLabV3+ compression report.

Like torchvision's metadata tests: one parametrized case per published figure, each naming
where it comes from, asserted within 2 % (parameters) and 3 % (MAdds). The report counts at
256x256 with 21 classes on VainF/DeepLabV3Plus-Pytorch; its figures (params in M, MAdds in
G, two decimals) are quoted in issue 21. A row whose MAdds the report gives only as "as
without KSAC" is checked against the figure it refers to.

MAdds convention. The report's MAdds are not conv/linear multiply-adds alone: every one of
its 24 MAdd figures sits 0.03 G (MobileNetV2, OS 32) to 0.07 G (ResNet-50, OS 16) above our
conv/linear count, and that gap is, within the figures' rounding, 2 operations per
BatchNorm output element plus 1 per ReLU/ReLU6 output element (the convention of ptflops
and of older thop releases). With it every row lands within 1 %; without it the compact
MobileNetV2 heads read 3-5 % low while ResNet-50 stays within 1 %. So `report_madds` is
`bench.complexity.count_madds` plus exactly those elementwise operations, and the
conv/linear-only figure the benchmark's tables print is asserted separately to be what
remains when they are taken away.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from bench.complexity import count_madds
from models import create_model

SIZE, CLASSES = (1, 3, 256, 256), 21
PARAMS_TOL, MADDS_TOL = 0.02, 0.03
MNV2, R50 = "deeplabv3plus_mobilenetv2", "deeplabv3plus_resnet50"
_ACTIVATIONS = (nn.ReLU, nn.ReLU6)
HEADS = {"ST": "standard", "DS": "ds", "BTN": "btn", "CASPP-1": "caspp1",
         "CASPP-2": "caspp2", "CASPP-3": "caspp3", "CASPP-4": "caspp4"}

# (backbone, output stride, head, KSAC, params [M] or None, MAdds [G] or None, source)
_BLOCKS = "report, ASPP-block table"
_CASPP = "report, compressed-ASPP table"
_AS_WITHOUT = "report, compressed-ASPP table (KSAC; MAdds as without KSAC)"
REPORT_ROWS = [
    (MNV2, 16, "ST", False, 5.23, 4.29, _BLOCKS),
    (MNV2, 16, "DS", False, 2.65, 1.25, _BLOCKS),
    (MNV2, 16, "BTN", False, 2.46, 1.03, _BLOCKS),
    (MNV2, 16, "CASPP-1", False, 2.46, 1.03, _CASPP),
    (MNV2, 16, "CASPP-2", False, 2.83, 1.12, _CASPP),
    (MNV2, 16, "CASPP-3", False, 4.15, 1.46, _CASPP),
    (MNV2, 16, "CASPP-4", False, 4.25, 1.49, _CASPP),
    (MNV2, 16, "CASPP-1", True, 2.39, 1.03, _AS_WITHOUT),
    (MNV2, 16, "CASPP-2", True, 2.61, 1.12, _AS_WITHOUT),
    (MNV2, 16, "CASPP-3", True, 3.45, 1.46, _AS_WITHOUT),
    (MNV2, 16, "CASPP-4", True, 3.55, 1.49, _AS_WITHOUT),
    (MNV2, 32, "ST", False, 5.23, 3.50, _BLOCKS),
    (MNV2, 32, "DS", False, 2.65, 0.83, _BLOCKS),
    (MNV2, 32, "BTN", False, 2.46, 0.64, _BLOCKS),
    (MNV2, 32, "CASPP-1", False, None, 0.64, _CASPP),
    (MNV2, 32, "CASPP-2", False, None, 0.67, _CASPP),
    (MNV2, 32, "CASPP-3", False, None, 0.75, _CASPP),
    (MNV2, 32, "CASPP-4", False, None, 0.76, _CASPP),
    (R50, 16, "ST", False, 39.76, 14.94, _BLOCKS),
    (R50, 16, "DS", False, 26.61, 9.21, _BLOCKS),
    (R50, 16, "BTN", False, 25.39, 8.72, _BLOCKS),
    (R50, 16, "CASPP-1", False, 25.39, 8.72, _CASPP),
    (R50, 16, "CASPP-2", False, 26.08, 8.89, _CASPP),
    (R50, 16, "CASPP-3", False, 28.07, 9.40, _CASPP),
    (R50, 16, "CASPP-4", False, 28.17, 9.43, _CASPP),
    (R50, 16, "CASPP-1", True, 25.09, 8.72, _AS_WITHOUT),
    (R50, 16, "CASPP-2", True, 25.43, 8.89, _AS_WITHOUT),
    (R50, 16, "CASPP-3", True, 26.49, 9.40, _AS_WITHOUT),
    (R50, 16, "CASPP-4", True, 26.59, 9.43, _AS_WITHOUT),
    (R50, 32, "ST", False, None, 9.29, _BLOCKS),
    (R50, 32, "DS", False, None, 5.95, _BLOCKS),
    (R50, 32, "BTN", False, None, 5.69, _BLOCKS),
    (R50, 32, "CASPP-1", False, None, 5.69, _CASPP),
    (R50, 32, "CASPP-2", False, None, 5.74, _CASPP),
    (R50, 32, "CASPP-3", False, None, 5.86, _CASPP),
    (R50, 32, "CASPP-4", False, None, 5.87, _CASPP),
]


def _row_id(row) -> str:
    model, os_, head, ksac, *_ = row
    return f"{'mnv2' if model == MNV2 else 'r50'}-os{os_}-{head}{'-ksac' if ksac else ''}"


def _elementwise_ops(model: nn.Module) -> tuple[list, list[int]]:
    """Hooks adding 2 ops per BatchNorm output element and 1 per ReLU/ReLU6 element."""
    total = [0]

    def hook(module, inputs, output):
        total[0] += output.numel() * (2 if isinstance(module, nn.BatchNorm2d) else 1)

    kinds = (nn.BatchNorm2d, *_ACTIVATIONS)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    return handles, total


@functools.cache
def _measure(model: str, os_: int, head: str, ksac: bool) -> tuple[int, int, int]:
    """(params, conv/linear MAdds, report-convention MAdds), each variant built once."""
    torch.manual_seed(0)
    net = create_model(model, num_classes=CLASSES, output_stride=os_, aspp=HEADS[head],
                       ksac=ksac)
    handles, extra = _elementwise_ops(net)
    c = count_madds(net, SIZE)  # one eval forward: thop's counters and ours
    for h in handles:
        h.remove()
    return c.params, c.madds, c.madds + extra[0]


@pytest.mark.parametrize("row", [r for r in REPORT_ROWS if r[4] is not None], ids=_row_id)
def test_params_match_the_report(row):
    model, os_, head, ksac, params, _, source = row
    ours = _measure(model, os_, head, ksac)[0] / 1e6
    assert abs(ours - params) <= PARAMS_TOL * params, f"{ours:.3f} M vs {params} M ({source})"


@pytest.mark.parametrize("row", REPORT_ROWS, ids=_row_id)
def test_madds_match_the_report(row):
    model, os_, head, ksac, _, madds, source = row
    _, conv_only, ours = _measure(model, os_, head, ksac)
    ours /= 1e9
    assert abs(ours - madds) <= MADDS_TOL * madds, (
        f"{ours:.3f} G (conv/linear only {conv_only / 1e9:.3f} G) vs {madds} G ({source})")


def test_the_convention_gap_is_elementwise_only():
    """The report-convention count exceeds conv/linear MAdds by BN and ReLU work alone,
    which is a few per cent of MobileNetV2 DS and under 1 % of ResNet-50 ST."""
    _, conv_m, rep_m = _measure(MNV2, 16, "DS", False)
    _, conv_r, rep_r = _measure(R50, 16, "ST", False)
    assert 0.02 < (rep_m - conv_m) / rep_m < 0.05
    assert 0 < (rep_r - conv_r) / rep_r < 0.01


def test_caspp1_is_btn_and_ksac_costs_no_madds():
    """The report's structural facts, exactly: CASPP-1 = BTN, KSAC changes only params."""
    for model in (MNV2, R50):
        assert _measure(model, 16, "CASPP-1", False) == _measure(model, 16, "BTN", False)
        for head in ("CASPP-1", "CASPP-3"):
            shared, plain = _measure(model, 16, head, True), _measure(model, 16, head, False)
            assert shared[1:] == plain[1:] and shared[0] < plain[0]
