"""prune_structured on a transformer: SegFormer-B0's attention and MLP blocks lose
channels through torch-pruning, every head the same dimensions, and the artifact rebuilds.

Before attention declared its head layout, every group touching q/kv/proj or a stage's
embedding width broke the per-head reshape and was kept whole; only the Mix-FFN hidden
channels were pruned.
"""

from __future__ import annotations

import torch

from bench.method import expand_methods
from models.segformer import EfficientAttention


def _stage(**kw):
    (stage,) = expand_methods("prune_structured", kw)[0].stages()
    return stage


def _widths(model) -> dict[str, tuple[int, int, int, int]]:
    """Per transformer block: heads, per-head q/k/v width x heads, embedding width, MLP
    hidden width."""
    return {n: (b.attn.heads, b.attn.q.out_features, b.attn.q.in_features,
                b.mlp.fc1.out_features)
            for n, b in model.named_modules() if isinstance(getattr(b, "attn", None),
                                                            EfficientAttention)}


def test_segformer_prunes_heads_evenly_runs_and_reloads(make_ctx, round_trip):
    ctx = make_ctx("prune_structured", "segformer_b0", ratio=0.25)
    model = ctx.build_model().eval()
    before = _widths(model)
    stage = _stage(ratio=0.25)
    model = stage.method.compress(ctx, model).eval()
    # every group, attention and embedding included, is prunable: none kept whole
    assert ctx.extras["prune_structured"]["groups_kept_unsupported"] == []
    after = _widths(model)
    for name, (heads, qk, width, hidden) in after.items():
        _, qk0, width0, hidden0 = before[name]
        assert qk < qk0 and qk % heads == 0, name  # the same dimensions left in every head
        attn = model.get_submodule(name).attn
        assert attn.kv.out_features == 2 * qk and attn.proj.in_features == qk
        assert width < width0 and hidden < hidden0, name  # embedding and MLP shrank too
    with torch.no_grad():
        for h, w in ((64, 64), (61, 93)):
            assert model(torch.randn(1, 3, h, w)).shape == (1, ctx.num_classes, h, w)
    round_trip(model, stage, ctx, "segformer_b0")
