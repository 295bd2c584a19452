"""Denormal floats flushed to zero (FTZ/DAZ) in every segbench process, set before the first
parallel region so that every intra-op thread, created later, inherits it.

Why: trained weights decay into the denormal range (the CamVid ENet quick baseline holds
13,600 of them) and x86 cores handle denormal operands on a slow path. A method that rounds
them away, fp16 storage decoded back to fp32 for one, then read as a 1.2-1.3x "speedup" of
the very same architecture in paired timing: a property of the host's float handling, not of
the method. Inference stacks flush denormals (TensorFlow sets FTZ by default, onnxruntime
has `session.set_denormal_as_zero`), so segbench does too, in training, evaluation and
timing alike, and records it in every run's `env.flush_denormal`.
"""

from __future__ import annotations

import torch

_enabled: bool | None = None


def flush_denormals() -> bool:
    """Turn FTZ/DAZ on for this process (once); True where the CPU supports it."""
    global _enabled
    if _enabled is None:
        _enabled = bool(torch.set_flush_denormal(True))
    return _enabled
