"""The contract every zoo model keeps, checked over the whole registry.

Logits at the input's exact H x W for any size (odd ones included), a plain tensor, a
backward pass that reaches the parameters, and a deterministic eval forward. New models
are covered automatically because the cases are generated from `list_models()`.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from models import cpu_default_models, create_model, list_models, model_info

NUM_CLASSES = 5
# Models cheap enough on a 2-core CPU to also run at CamVid size in the default test run.
LIGHT = {"enet", "unet_small", "linknet", "fastlinknet", "mobileseg", "lraspp_mobilenetv3"}


@functools.lru_cache(maxsize=2)
def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=NUM_CLASSES)


def test_cpu_defaults_are_exactly_the_cheap_models():
    assert set(cpu_default_models()) == {"enet", "unet_small"}


@pytest.mark.parametrize("name", list_models())
def test_metadata(name):
    info = model_info(name)
    assert info.paper and info.year and 1990 < info.year < 2100
    assert len(info.input_size) == 2 and all(s > 0 for s in info.input_size)
    assert info.output_stride in {8, 16, 32}
    if info.published_params is not None:
        assert info.published_classes is not None
        assert info.extra.get("source"), "a published figure needs a citation"


@pytest.mark.parametrize("name", list_models())
def test_forward_shape_backward_determinism(name):
    torch.set_num_threads(1)
    model = _model(name)
    model.train()
    x = torch.randn(2, 3, 32, 32)  # small: keeps the 134 M-parameter FCN-8s affordable
    y = model(x)
    assert isinstance(y, torch.Tensor) and y.shape == (2, NUM_CLASSES, 32, 32)
    model.zero_grad(set_to_none=True)
    target = torch.randint(0, NUM_CLASSES, (2, 32, 32))
    F.cross_entropy(y, target).backward()  # nonzero even for FCN's zero-initialised scorers
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
    model.zero_grad(set_to_none=True)

    model.eval()
    x = torch.randn(1, 3, 33, 47)  # odd, and a multiple of no network stride
    with torch.no_grad():
        a, b = model(x), model(x)
    assert a.shape == (1, NUM_CLASSES, 33, 47)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", sorted(LIGHT & set(list_models())))
@pytest.mark.parametrize("size", [(360, 480), (97, 131), (64, 64)])
def test_light_models_other_sizes(name, size):
    torch.set_num_threads(1)
    model = _model(name).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, *size))
    assert y.shape == (1, NUM_CLASSES, *size)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("size", [(360, 480), (97, 131), (128, 128), (64, 64)])
def test_all_models_other_sizes(name, size):
    model = _model(name).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, *size))
    assert y.shape == (1, NUM_CLASSES, *size)


def test_unet_small_is_unet_at_base_16():
    a = create_model("unet_small", num_classes=3)
    b = create_model("unet", num_classes=3, base_channels=16)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]


def test_models_without_backbone_reject_pretrained():
    with pytest.raises(ValueError, match="no ImageNet backbone"):
        create_model("enet", num_classes=3, pretrained_backbone=True)
