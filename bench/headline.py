"""`METHOD=headline`, the default grid of `make bench`: one configuration per method
family, the one its write-up in docs/ leads with, so that a cold run of the two CPU models
fits in about 80 minutes on 2 cores (`bench run --method headline --dry-run` estimates it
on the machine at hand). `METHOD=all` keeps every family's full sweep.

family -> (method spec or preset, per-stage config overrides; None: a preset's own).
Measured own costs of these rows (docs/*.md, the reference records) put a cold grid, both
baselines trained, at about 78 minutes: baselines 27, cheapconv 22, the rest under 10 each.
The `factorize` row (issue 20) has no measured cost yet; it fine-tunes like the `prune`
row (about 2.6 min a model in docs/pruning.md), so expect about 5 more minutes.
"""

from __future__ import annotations

from typing import Any

HEADLINE: dict[str, tuple[str, list[dict[str, Any]] | None]] = {
    "none": ("none", [{}]),
    # methods/finetune.py: the baseline fine-tuned as the compressing rows are, nothing
    # compressed; what the fine-tuned rows' ΔmIoU is read against
    "control": ("finetune", [{}]),
    # docs/pruning.md: "Structured pruning is the one that shrinks MAdds"; half the
    # channels is the setting it discusses, and the one row whose latency can improve
    "prune": ("prune_structured", [{"ratio": 0.5}]),
    # docs/quantization.md: W8A8 PTQ, the row every QAT row is compared with (lossless on
    # U-Net-small, 2.5x faster in onnxruntime) and the family's cheapest
    "quant": ("ptq", [{"weight_bits": 8, "act_bits": 8}]),
    # docs/weight_sharing.md: k-means at its default (5-bit indices, 8 for the first and
    # last layer), ENet's best ratio at <= 1 point lost (4.6x) and U-Net-small's 6.9x at
    # +0.1; `deep_compression` (U-Net-small 14.2x) costs 3.5x its time and stays in `all`
    "weight_sharing": ("kmeans", [{}]),
    "storage": ("fp16", [{}]),
    # docs/factorize.md: spatial/channel SVD at 2x fewer MAdds, the operating point
    # issue 20 asks for (mIoU loss and paired speedup at a 2x MAdds reduction)
    "factorize": ("lowrank", [{"ratio": 0.5}]),
    "coding": ("huffman", [{}]),
    # docs/distillation.md: the cheap student, trained from scratch
    "cheapconv": ("cheapconv", [{}]),
    # docs/distillation.md, "after a stage that does not build a student (e.g. prune+kd)
    # the distiller fine-tunes the compressed model": the pruning headline distilled from
    # its own baseline, beside the same pruned model without distillation (the `prune`
    # row), at fine-tuning cost; a fresh student (`kd` alone) costs a baseline's training
    "distill": ("prune_structured+kd", [{"ratio": 0.5}, {}]),
}

