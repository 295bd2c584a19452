"""Baseline checkpoints, trained once per (model, kwargs, dataset, budget, seed, training
config) and cached under that key, so every method starts from the same weights.

The sidecar JSON holds the checkpoint's SHA-256 and what training it cost; a checkpoint
whose bytes do not match, that does not load, or whose sidecar is malformed, is retrained
rather than silently used. Train-or-load runs under the key's file lock (`bench.locks`),
so two grids sharing a results directory train a baseline once and every run names the
exact bytes it started from; the checkpoint goes through a uniquely named temporary file.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from bench.atomic import atomic_write_text
from bench.digest import file_sha256
from bench.locks import locked


def cache_paths(results: Path, key: str) -> tuple[Path, Path]:
    d = Path(results) / "cache" / "baselines"
    return d / f"{key}.safetensors", d / f"{key}.json"


def sidecar_problem(info: Any) -> str | None:
    """What makes a sidecar unusable (the keys a run reads from it), or None."""
    if not isinstance(info, dict):
        return f"a JSON object expected, not {type(info).__name__}"
    if not isinstance(info.get("sha256"), str):
        return "no sha256 string"
    train = info.get("train")
    if not isinstance(train, dict) or not isinstance(train.get("seconds"), (int, float)):
        return "no train.seconds number"
    return None


def load_cached(model: nn.Module, results: Path, key: str) -> dict[str, Any] | None:
    """Load the cached weights into `model`; None if absent, corrupt or not matching."""
    ckpt, side = cache_paths(results, key)
    if not (ckpt.exists() and side.exists()):
        return None
    try:
        info = json.loads(side.read_text())
        problem = sidecar_problem(info)
        if problem:
            raise ValueError(f"malformed sidecar: {problem}")
        if file_sha256(ckpt) != info["sha256"]:
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
    """Return (info, trained_now). `model` ends up holding the baseline weights, and
    `info["sha256"]` is the hash of exactly those bytes."""
    with locked(results, "baseline", key):
        info = load_cached(model, results, key)
        if info is not None:
            return info, False
        summary = train_fn(model)
        ckpt, side = cache_paths(results, key)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=ckpt.parent, prefix=f".{ckpt.name}.", suffix=".tmp")
        os.close(fd)
        try:
            # save_model stores shared weights (e.g. KSAC kernels) once
            save_model(model, tmp)
            sha = file_sha256(Path(tmp))  # of the bytes written, whatever happens to `ckpt`
            os.replace(tmp, ckpt)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        info = {"key": key, "sha256": sha, "train": summary, **describe}
        atomic_write_text(side, json.dumps(info, indent=2, sort_keys=True, default=str))
        return info, True
