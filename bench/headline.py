"""`METHOD=headline`, the default grid of `make bench`: one configuration per method
family, the one its write-up in docs/ leads with, so that a cold run of the two CPU models
fits in about 80 minutes on 2 cores (`bench run --method headline --dry-run` estimates it
on the machine at hand). `METHOD=all` keeps every family's full sweep.

family -> (method spec or preset, per-stage config overrides; None: a preset's own).
A cold run of this grid, both baselines trained, took 78 minutes on a fresh clone, timed
once as one command on a shared 2-core host (README, "Prerequisites"). The per-row costs
are in the committed references' records (their `cost h` column); `--dry-run` reads them
(bench/plan.py), so its estimate follows the reference as rows land.
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
    # U-Net-small and faster in onnxruntime, in the reference and the archived grid) and
    # the family's cheapest
    "quant": ("ptq", [{"weight_bits": 8, "act_bits": 8}]),
    # docs/weight_sharing.md: k-means at its default (5-bit indices, 8 for the first and
    # last layer), ENet's best ratio at <= 1 point lost in the archived grid (d2930f5);
    # `deep_compression` (the archived grid's best U-Net-small ratio) prunes and fine-tunes
    # before it shares, costs more and stays in `all`
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

