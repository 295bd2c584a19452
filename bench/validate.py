"""Checks of command-line inputs made before any work starts, so a bad value fails in the
first second with one line naming it (exit 2), not an hour into a grid or as a traceback.

Each function returns the problem as a sentence, or None; `bench.cli` turns a problem
into a usage error. Settings (budgets, the training config, methods' configs) check
themselves when created (`bench.config`); what is here needs more than one field's type.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any


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
