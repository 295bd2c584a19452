"""Checks of command-line inputs made before any work starts, so a bad value fails in the
first second with one line naming it (exit 2), not an hour into a grid or as a traceback.

Each function returns the problem as a sentence, or None; `bench.cli` turns a problem
into a usage error. Method configs are checked by their plugins (`bench.method`).
"""

from __future__ import annotations

import dataclasses
import math
import re
import tempfile
from pathlib import Path
from typing import Any

from bench.budgets import Budget

# Budget fields and their lower bounds; None allowed where the field documents it
_BUDGET_INTS = {"epochs": 1, "finetune_epochs": 0, "batch_size": 1, "crop_size": 8,
                "latency_runs": 1, "latency_warmup": 0, "calibration_images": 1}
_BUDGET_OPTIONAL_INTS = {"eval_size": 8, "train_images": 1, "eval_images": 1}
_BUDGET_POSITIVE_FLOATS = ("lr", "finetune_lr_scale")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def budget_problem(b: Budget) -> str | None:
    """An out-of-range budget field (`--set budget.<field>=...`), or None."""
    for name, lo in _BUDGET_INTS.items():
        v = getattr(b, name)
        if not _is_int(v) or v < lo:
            return f"budget.{name} must be an integer >= {lo}, got {v!r}"
    for name, lo in _BUDGET_OPTIONAL_INTS.items():
        v = getattr(b, name)
        if v is not None and (not _is_int(v) or v < lo):
            return f"budget.{name} must be null or an integer >= {lo}, got {v!r}"
    for name in _BUDGET_POSITIVE_FLOATS:
        v = getattr(b, name)
        if not _is_finite(v) or v <= 0:
            return f"budget.{name} must be a finite number > 0, got {v!r}"
    return None


def train_problem(cfg: Any) -> str | None:
    """An out-of-range training setting (`--set train.<field>=...`), or None."""
    ranges = {"momentum": (0.0, 1.0, False), "weight_decay": (0.0, None, True),
              "sgd_lr_scale": (0.0, None, False), "poly_power": (0.0, None, True)}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if f.name in ranges:
            lo, hi, lo_ok = ranges[f.name]
            if not _is_finite(v) or v < lo or (v == lo and not lo_ok) or (hi and v >= hi):
                want = f"in [{lo}, {hi})" if hi else f"{'>=' if lo_ok else '>'} {lo}"
                return f"train.{f.name} must be a finite number {want}, got {v!r}"
        elif f.name == "amp" and not isinstance(v, bool):
            return f"train.amp must be true or false, got {v!r}"
    return None


def model_kwargs_problem(name: str, kwargs: dict[str, Any], num_classes: int) -> str | None:
    """Whether zoo model `name` accepts `kwargs` (`--set model.<field>=...`): it is built
    on the meta device, which allocates nothing, so every model checks in milliseconds."""
    import torch

    from models import create_model

    if not kwargs:
        return None
    try:
        with torch.device("meta"):
            create_model(name, num_classes=num_classes, **kwargs)
    except Exception as e:  # whatever the builder says about its arguments
        sets = ", ".join(f"model.{k}={v!r}" for k, v in kwargs.items())
        return f"model {name} cannot be built with {sets}: {type(e).__name__}: {e}".splitlines()[0]
    return None


def duplicate_stage_problem(spec: str, stages: list[dict[str, Any]]) -> str | None:
    """A pipeline naming one method twice: its `--set <stage>.<field>` keys and its record
    could not tell the two apart, and a method's own config says how much it does."""
    names = [s["method"] for s in stages]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        return (f"pipeline {spec!r} runs {', '.join(dupes)} more than once; a stage may appear "
                f"once (set its strength with --set {dupes[0]}.<field>=...)")
    return None


def results_problem(path: Path) -> str | None:
    """A `--results` that is not a directory this process can write into, or None.
    Nothing is created: a missing directory is checked at its nearest existing parent."""
    p = Path(path)
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        where = "is" if probe == p else f"lies under {probe}, which is"
        return f"--results {p} {where} a file, not a directory"
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        return f"--results {p}: cannot write in {probe} ({e.strerror or e})"
    return None


def parse_size(text: str) -> tuple[int, int]:
    """`HxW` (e.g. 128x128, each >= 1) as (H, W); ValueError naming the form otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"--size expects HxW with H, W >= 1 (e.g. 128x128), got {text!r}")
    return int(m.group(1)), int(m.group(2))
