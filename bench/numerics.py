"""Denormal floats flushed to zero (FTZ/DAZ) in every segbench process, set before the first
parallel region so that every intra-op thread, created later, inherits it.

Why: trained weights decay into the denormal range (the CamVid ENet quick baseline holds
13,600 of them) and x86 cores handle denormal operands on a slow path. A method that rounds
them away, fp16 storage decoded back to fp32 for one, then read as a 1.2-1.3x "speedup" of
the very same architecture in paired timing: a property of the host's float handling, not of
the method. Inference stacks flush denormals (TensorFlow sets FTZ by default, onnxruntime
has `session.set_denormal_as_zero`), so segbench does too, in training, evaluation and
timing alike, and records it in every run's `env.flush_denormal`.

FTZ/DAZ live in each thread's MXCSR register, and other libraries change them: creating an
onnxruntime `InferenceSession` clears them in the calling thread (measured, onnxruntime
1.32). Every process that had built one ran all later PyTorch work with denormals on the
slow path, so a U-Net-small CamVid baseline timed at 420-1230 ms in torch against 135 ms
elsewhere, and a fp16 row read 4.6x "faster" than the identical fp32 network. So
onnxruntime sessions are built with `session.set_denormal_as_zero` (which leaves it set),
OpenVINO with `CPU_DENORMALS_OPTIMIZATION`, and `flush_denormals` is re-applied, not
cached, before every timing (bench/latency.py), which also probes it after its last round
and records the answer (`metrics.latency_denormals_flushed`): a row timed with it cleared is
marked on the leaderboard, so this cannot recur unseen. (The probe reads the timing thread;
onnxruntime's and OpenVINO's own worker threads get it from the options above.)
"""

from __future__ import annotations

import torch


def flush_denormals() -> bool:
    """Turn FTZ/DAZ on in the calling thread (again: other libraries clear them); True
    where the CPU supports it."""
    return bool(torch.set_flush_denormal(True))


def denormals_flushed() -> bool:
    """Whether a denormal operand reads as zero in the calling thread right now (DAZ)."""
    return float(torch.tensor([1e-40], dtype=torch.float32) * 1.0) == 0.0
