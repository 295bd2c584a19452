"""prune_structured's `round_to`: every pruned group keeps a multiple of N channels (the
widths vectorised CPU kernels run whole), a group smaller than N stays whole rather than
vanishing, the setting is validated and labelled, and the model still exports and reloads."""

from __future__ import annotations

import pytest
import torch

from bench.config import ConfigError
from bench.method import expand_methods
from methods.prune_structured import module_shapes, rounded_keep


def _stage(**kw):
    (stage,) = expand_methods("prune_structured", kw)[0].stages()
    return stage


def _out_widths(model) -> dict[str, int]:
    return {n: m.out_channels for n, m in model.named_modules()
            if isinstance(m, torch.nn.modules.conv._ConvNd)}


def test_rounded_keep_is_the_nearest_multiple_never_none_never_more_than_the_group():
    assert rounded_keep(48, 24, 8) == 24
    assert rounded_keep(26, 13, 8) == 16  # 13 is nearer 16 than 8
    assert rounded_keep(26, 11, 8) == 8
    assert rounded_keep(13, 7, 8) == 8  # torch-pruning's own rounding keeps 0 here
    assert rounded_keep(13, 7, 16) == 13  # smaller than one multiple: kept whole
    assert rounded_keep(64, 32, 1) == 32


@pytest.mark.parametrize("model_name,n", [("unet_small", 16), ("enet", 8)])
def test_pruned_widths_are_multiples_and_the_artifact_round_trips(make_ctx, round_trip,
                                                                 model_name, n):
    ctx = make_ctx("prune_structured", model_name, ratio=0.5, round_to=n)
    model = ctx.build_model().eval()
    before = _out_widths(model)
    stage = _stage(ratio=0.5, round_to=n)
    stage.method.compress(ctx, model)
    after = _out_widths(model)
    changed = {k: v for k, v in after.items() if v != before[k]}
    assert changed, "nothing was pruned"
    assert all(v % n == 0 and v > 0 for v in changed.values()), changed
    # without round_to the same ratio leaves widths that are not multiples of n
    plain = ctx.build_model().eval()
    _stage(ratio=0.5).method.compress(ctx, plain)
    assert any(v % n for k, v in _out_widths(plain).items() if v != before[k])
    loaded, _, _ = round_trip(model, stage, ctx, model_name)
    assert module_shapes(loaded) == module_shapes(model)


def test_round_to_is_validated_and_labelled():
    with pytest.raises(ConfigError, match="round_to=0; valid: an integer >= 1"):
        _stage(round_to=0)
    assert _stage(ratio=0.5).method.describe() == "ratio=0.5,l1"  # default: label unchanged
    assert _stage(ratio=0.5, round_to=8).method.describe() == "ratio=0.5,l1,round_to=8"


def test_round_to_at_its_default_leaves_run_ids_unchanged():
    assert "round_to" not in _stage(ratio=0.5).config_dict()  # recorded runs keep their ids
    assert _stage(ratio=0.5, round_to=8).config_dict()["round_to"] == 8
