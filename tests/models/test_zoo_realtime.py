"""The real-time models of today (issue 21, part 2) against their published figures.

Parameter counts within 3 % of the paper's rounded figure, at the paper's class count.
FLOPs conventions differ per paper and are stated with each check. PP-LiteSeg-T has no
published parameter or FLOPs figure (its paper and PaddleSeg report mIoU and FPS only).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.complexity import count_madds, count_params
from models import create_model, list_models, model_info
from models.segformer import EfficientAttention

REALTIME = [n for n in ("segformer_b0", "bisenetv2", "stdc1", "pp_liteseg_t")
            if n in list_models() and model_info(n).published_params is not None]


@pytest.mark.parametrize("name", REALTIME)
def test_params_within_3_percent_of_published(name):
    info = model_info(name)
    torch.manual_seed(0)
    ours = count_params(create_model(name, num_classes=info.published_classes))[0]
    assert abs(ours - info.published_params) <= 0.03 * info.published_params, (
        f"{ours} vs {info.published_params} ({info.extra['source']})")


def _attention_matmul_madds(model: torch.nn.Module, shape) -> int:
    """QK^T and AV multiply-adds: 2 x tokens x reduced tokens x width, per attention."""
    total = [0]

    def hook(module, inputs, output):
        x, h, w = inputs
        sr = module.sr.stride[0] if module.sr is not None else 1
        total[0] += 2 * (h * w) * ((h // sr) * (w // sr)) * x.shape[-1]

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, EfficientAttention)]
    with torch.no_grad():
        model.eval()(torch.zeros(shape))
    for h in handles:
        h.remove()
    return total[0]


def test_segformer_b0_gflops_as_its_authors_count_them():
    """SegFormer's 8.4 GFLOPs (512x512, 150 classes) are conv/linear multiply-adds plus
    the attention matmuls (NVlabs/SegFormer tools/get_flops.py adds them to mmcv's count);
    ours plus those matmuls must land within 3 %, and the matmuls alone are what our
    conv/linear convention leaves out."""
    info = model_info("segformer_b0")
    model = create_model("segformer_b0", num_classes=info.published_classes)
    shape = (1, 3, *info.input_size)
    conv_linear = count_madds(model, shape).madds
    total = (conv_linear + _attention_matmul_madds(model, shape)) / 1e9
    assert abs(total - info.published_madds) <= 0.03 * info.published_madds, total
    assert conv_linear / 1e9 < 0.9 * info.published_madds


def _paddle_flops(model: nn.Module, shape) -> float:
    """GFLOPs as paddle.flops counts them (PaddleSeg's model-zoo table): conv/linear
    multiply-adds, plus 1 per output element of a conv/linear with a bias, plus 2 per
    BatchNorm output element; activations, pooling and resizing free."""
    extra = [0]

    def hook(module, inputs, output):
        if isinstance(module, nn.BatchNorm2d):
            extra[0] += 2 * output.numel()
        elif getattr(module, "bias", None) is not None:
            extra[0] += output.numel()

    kinds = (nn.BatchNorm2d, nn.Conv2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model.eval()(torch.zeros(shape))
    for h in handles:
        h.remove()
    return (count_madds(model, shape).madds + extra[0]) / 1e9


PADDLESEG = [
    "bisenetv2",
    pytest.param("stdc1", marks=pytest.mark.xfail(strict=True, reason=(
        "PaddleSeg's table gives STDC1-Seg50 24.83 GFLOPs at 1024x512, but its own inference "
        "branch (backbone, context path, FFM, 256-wide head) counts ~16.9 G by the same rule "
        "that reproduces its BiSeNetV2 and SegFormer-B0 figures to 0.3 %, while the params "
        "agree to 0.2 %: the FLOPs row is not reproducible from the published architecture"))),
]


@pytest.mark.parametrize("name", PADDLESEG)
def test_paddleseg_gflops_with_the_paddle_convention(name):
    """PaddleSeg measured these at 1024x512, 19 classes, with paddle.flops (FLOPs = MAdds
    + bias adds + 2 per BatchNorm element, not 2 x MAdds)."""
    info = model_info(name)
    model = create_model(name, num_classes=info.published_classes)
    ours = _paddle_flops(model, (1, 3, *info.input_size))
    assert abs(ours - info.published_madds) <= 0.03 * info.published_madds, ours


def test_paddle_convention_reproduces_paddleseg_segformer_b0():
    """The same table's SegFormer_B0 row (13.63 GFLOPs at 1024x512, 3.72 M params, 19
    classes) pins the convention on a transformer too: paddle.flops counts linear layers
    but not the attention matmuls."""
    model = create_model("segformer_b0", num_classes=19)
    assert abs(_paddle_flops(model, (1, 3, 512, 1024)) - 13.63) <= 0.01 * 13.63
    assert abs(count_params(model)[0] - 3.72e6) <= 0.01 * 3.72e6


def test_pp_liteseg_t_encoder_is_stdc1s():
    """PP-LiteSeg-T publishes no params/FLOPs; its encoder is STDC1-Seg's backbone, whose
    count the stdc1 row checks, so the two must share it exactly."""
    a = create_model("pp_liteseg_t", num_classes=19).backbone
    b = create_model("stdc1", num_classes=19).backbone
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
