"""torch-pruning helpers that structured pruning and the sensitivity analysis
(bench/sensitivity.py) share, so both rank and remove the same channel groups: the layer
types a group can start from, the classifier that always stays whole, the attention
layers whose outputs split into heads, and tracing with in-place activations switched off.
"""

from __future__ import annotations

import contextlib

from torch import nn

ROOT_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
              nn.ConvTranspose3d, nn.Linear)


def classifier_layers(model: nn.Module, num_classes: int) -> list[nn.Module]:
    """Layers producing `num_classes` channels: the classifier(s), never pruned."""
    return [m for m in model.modules() if isinstance(m, ROOT_TYPES)
            and getattr(m, "out_channels", getattr(m, "out_features", None)) == num_classes]


def attention_heads(model: nn.Module) -> dict[nn.Module, int]:
    """{projection: number of head-sized chunks of its output} for every attention module
    that declares `head_layers()` (models/segformer.py). torch-pruning's `num_heads` then
    removes the same dimensions from every head, so q.k products and the value/output
    projections stay aligned; without it a group would lose channels unevenly across
    heads and the per-head reshape would break."""
    heads: dict[nn.Module, int] = {}
    for m in model.modules():
        declare = getattr(m, "head_layers", None)
        if callable(declare):
            heads.update(declare())
    return heads


@contextlib.contextmanager
def no_inplace(model: nn.Module):
    """Trace with in-place activations switched off: torch-pruning 1.6 loses a conv from
    its graph when an in-place ReLU follows it directly (VGG in FCN-8s has no BatchNorm
    between them). Pruning decisions do not depend on it; the flags are restored."""
    flagged = [m for m in model.modules() if getattr(m, "inplace", None) is True]
    for m in flagged:
        m.inplace = False
    try:
        yield
    finally:
        for m in flagged:
            m.inplace = True
