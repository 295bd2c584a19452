"""`cheapconv`: Moonshine's cheap convolutions (Crowley, Gray, Storkey 2018).

The student is the teacher's architecture with the full 3x3 convolutions of one part of
the model replaced by a cheaper block, so no redesign is needed. Blocks, as in the
Moonshine code (each replaces a bare convolution; the model's own BN/activation follow):

* `separable` (DConv): depthwise 3x3 -> BN -> ReLU -> pointwise 1x1.
* `grouped` (DConvA<g>): 3x3 with `groups` groups -> BN -> ReLU -> pointwise 1x1.
* `bottleneck` (ConvB<b>): 1x1 to out/`bottleneck` -> BN -> ReLU -> 3x3 -> BN -> ReLU -> 1x1.

Stride, padding and dilation of the replaced convolution are kept. Eligible: `nn.Conv2d`
with a 3x3 kernel, one group and more than 3 input channels (the RGB stem stays) whose
kernel is not shared with another convolution (KSAC's shared atrous kernels stay).
Scopes: `all`; `head` = everything outside the encoder (the module named `backbone` or
`encoder`, or, for a model without one, everything up to the last convolution at the
lowest resolution); `decoder` = the head's convolutions that run above that lowest
resolution (DeepLab's decoder without its ASPP; for ENet or U-Net, the same as `head`).

The student starts from scratch (`init=scratch`, seeded like the baseline) or keeps the
trained baseline's other weights (`init=teacher`), and is trained on the baseline's
schedule with the task loss; followed by a distillation stage (`cheapconv+at`) it is left
to that stage to train with the teacher. The artifact records which convolutions were
replaced, so the loader rebuilds the same structure.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from bench.config import Settings, setting
from bench.facts import Fact
from bench.method import Method, NotApplicable, register_method
from bench.registry import UnknownNameError
from methods.distill.layers import find_encoder, probe
from methods.distill.method import (
    later_stage_trains,
    record_schedule,
    stage_position,
    student_schedule,
)

BLOCKS = ("bottleneck", "grouped", "separable")
SCOPES = ("all", "decoder", "head")
INITS = ("scratch", "teacher")


class CheapConvBlock(nn.Sequential):
    """A cheap replacement of one 3x3 convolution; `kind` is one of BLOCKS."""

    def __init__(self, layers: OrderedDict, kind: str):
        super().__init__(layers)
        self.kind = kind


def is_eligible(m: nn.Module) -> bool:
    return (type(m) is nn.Conv2d and m.kernel_size == (3, 3) and m.groups == 1
            and m.in_channels > 3)


def cheap_block(conv: nn.Conv2d, kind: str, groups: int = 4, bottleneck: int = 2
                ) -> CheapConvBlock:
    """The `kind` block with `conv`'s channels, stride, padding and dilation."""
    from models._common import init_weights

    cin, cout = conv.in_channels, conv.out_channels
    spatial = dict(kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding,
                   dilation=conv.dilation, padding_mode=conv.padding_mode, bias=False)
    bias = conv.bias is not None
    if kind in ("separable", "grouped"):
        g = cin if kind == "separable" else math.gcd(groups, cin)
        layers = OrderedDict(
            spatial=nn.Conv2d(cin, cin, groups=g, **spatial),
            bn=nn.BatchNorm2d(cin),
            relu=nn.ReLU(inplace=True),
            pointwise=nn.Conv2d(cin, cout, 1, bias=bias),
        )
    elif kind == "bottleneck":
        mid = max(1, cout // bottleneck)
        layers = OrderedDict(
            reduce=nn.Conv2d(cin, mid, 1, bias=False),
            bn1=nn.BatchNorm2d(mid),
            relu1=nn.ReLU(inplace=True),
            spatial=nn.Conv2d(mid, mid, **spatial),
            bn2=nn.BatchNorm2d(mid),
            relu2=nn.ReLU(inplace=True),
            expand=nn.Conv2d(mid, cout, 1, bias=bias),
        )
    else:
        raise UnknownNameError(f"unknown cheapconv block {kind!r}; valid: {', '.join(BLOCKS)}")
    block = CheapConvBlock(layers, kind)
    init_weights(block)
    return block.to(conv.weight.device)


def scope_convs(model: nn.Module, scope: str, input_shape) -> list[str]:
    """Names of the eligible convolutions in `scope` (see the module docstring)."""
    mods = dict(model.named_modules())
    uses = Counter(id(m.weight) for m in mods.values() if isinstance(m, nn.Conv2d))
    # a kernel shared between convolutions (KSAC) stays: replacing it would unshare it
    eligible = [n for n, m in mods.items() if is_eligible(m) and uses[id(m.weight)] == 1]
    if scope == "all":
        return eligible
    pr = probe(model, input_shape)
    # a 1x1 map is a global-context branch (ASPP pooling), not a resolution of the network
    convs = [n for n in pr.order if isinstance(mods[n], nn.Conv2d) and (pr.spatial(n) or 0) > 1]
    lowest = min(pr.spatial(n) for n in convs)
    enc = find_encoder(model)
    if enc is not None:
        encoder = {n for n in convs if n.startswith(enc + ".")}
    else:
        last = max(i for i, n in enumerate(convs) if pr.spatial(n) == lowest)
        encoder = set(convs[: last + 1])
    head = [n for n in eligible if pr.ran(n) and n not in encoder]
    if scope == "decoder":
        head = [n for n in head if pr.spatial(n) > lowest]
    return head


def replace_convs(model: nn.Module, names: list[str], kind: str, groups: int,
                  bottleneck: int) -> nn.Module:
    for name in names:
        conv = model.get_submodule(name)
        if not is_eligible(conv):
            raise ValueError(f"cheapconv: {name} is a {type(conv).__name__}, not an eligible "
                             f"3x3 convolution")
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, cheap_block(conv, kind, groups, bottleneck))
    return model


@dataclass
class CheapConvReplaced(Fact):
    """The convolutions replaced, and their parameters before and as cheap blocks."""

    key: ClassVar[str] = "cheapconv"
    replaced: int
    modules: list[str]
    params_replaced: int
    params_blocks: int


@register_method("cheapconv")
class CheapConvolutions(Method):
    version = 1
    builds_student = True  # a distillation stage after it trains this student from scratch

    @dataclass
    class Config(Settings):
        block: str = setting("separable", choices=BLOCKS)
        scope: str = setting("all", choices=SCOPES)
        groups: int = setting(4, ge=1)  # groups of the `grouped` block's 3x3 convolution
        bottleneck: int = setting(2, ge=1)  # width reduction of the `bottleneck` block
        # scratch | teacher (keep the baseline's other weights)
        init: str = setting("scratch", choices=INITS)

    def __init__(self, config=None):
        super().__init__(config)
        self._trains = False

    def compress(self, ctx, model: nn.Module) -> nn.Module:
        c = self.config
        student = model if c.init == "teacher" else ctx.build_model()
        student.to(ctx.device)
        names = scope_convs(student, c.scope, ctx.input_shape)
        if not names:
            raise NotApplicable(f"cheapconv: scope {c.scope!r} of {ctx.spec.model} holds no "
                             f"eligible 3x3 convolution; valid scopes: {', '.join(SCOPES)}")
        before = sum(p.numel() for n in names for p in student.get_submodule(n).parameters())
        replace_convs(student, names, c.block, int(c.groups), int(c.bottleneck))
        after = sum(p.numel() for n in names for p in student.get_submodule(n).parameters())
        ctx.report(CheapConvReplaced(replaced=len(names), modules=names,
                                     params_replaced=before, params_blocks=after))
        pos = stage_position(ctx, self.name)
        self._trains = not later_stage_trains(ctx, pos)
        if self._trains:
            record_schedule(ctx, self, True, pos, init=c.init)
        return student

    def finetune_epochs(self, ctx) -> int:
        """The baseline's epochs, unless a distillation stage after it trains the student."""
        return student_schedule(ctx, True)[0] if self._trains else 0

    def finetune_lr(self, ctx) -> float:
        return student_schedule(ctx, True)[1]

    def artifact_meta(self, model: nn.Module) -> dict:
        return {"replaced": [n for n, m in model.named_modules()
                             if isinstance(m, CheapConvBlock)]}

    def rebuild(self, model: nn.Module, meta: dict) -> nn.Module:
        c = self.config
        return replace_convs(model, list(meta["replaced"]), c.block, int(c.groups),
                             int(c.bottleneck))

    def check(self, model: nn.Module, meta: dict) -> list[str]:
        problems = []
        for name in meta.get("replaced", []):
            m = model.get_submodule(name)
            if not isinstance(m, CheapConvBlock) or m.kind != self.config.block:
                problems.append(f"{name} is not a {self.config.block} cheap block")
        if not meta.get("replaced"):
            problems.append("no convolution was replaced")
        return problems
