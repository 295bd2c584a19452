"""Baseline checkpoints, trained once per (model, kwargs, dataset, budget, seed, training
config) and cached under that key, so every method starts from the same weights.

The sidecar JSON holds the checkpoint's SHA-256 and what training it cost; a checkpoint
whose bytes do not match, or that does not load, is retrained rather than silently used.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from bench.atomic import atomic_write_text


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_paths(results: Path, key: str) -> tuple[Path, Path]:
    d = Path(results) / "cache" / "baselines"
    return d / f"{key}.safetensors", d / f"{key}.json"


def load_cached(model: nn.Module, results: Path, key: str) -> dict[str, Any] | None:
    """Load the cached weights into `model`; None if absent, corrupt or not matching."""
    ckpt, side = cache_paths(results, key)
    if not (ckpt.exists() and side.exists()):
        return None
    try:
        info = json.loads(side.read_text())
        if _sha256(ckpt) != info["sha256"]:
            raise ValueError("checksum mismatch")
        load_model(model, str(ckpt), strict=True)
    except (ValueError, KeyError, RuntimeError, OSError, SafetensorError) as e:
        print(f"warning: cached baseline {ckpt.name} is corrupt ({e}); retraining",
              file=sys.stderr)
        return None
    return info


def get_or_train(model: nn.Module, results: Path, key: str,
                 train_fn: Callable[[nn.Module], dict[str, Any]],
                 describe: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Return (info, trained_now). `model` ends up holding the baseline weights."""
    info = load_cached(model, results, key)
    if info is not None:
        return info, False
    summary = train_fn(model)
    ckpt, side = cache_paths(results, key)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    tmp = ckpt.with_suffix(".tmp")
    save_model(model, str(tmp))  # handles shared weights (e.g. KSAC kernels) by storing them once
    tmp.replace(ckpt)
    info = {"key": key, "sha256": _sha256(ckpt), "train": summary, **describe}
    atomic_write_text(side, json.dumps(info, indent=2, sort_keys=True, default=str))
    return info, True
