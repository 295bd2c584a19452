"""The run records a figure draws from, grouped the way figures are: per model, dataset and
budget (a budget's overrides included, so two differently sized `smoke` runs never share
a figure)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.records import OK, iter_records
from bench.spec import stable_hash


def ok_records(results: Path, models: list[str] | None = None) -> list[dict[str, Any]]:
    return [r for r in iter_records(results) if r.get("status") == OK
            and (not models or r["model"] in models)]


def budget_key(rec: dict[str, Any]) -> str:
    return stable_hash(rec["config"]["budget"], n=6)


def groups(records: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], list[dict]]:
    """(model, dataset, budget name, budget hash) -> records, in a stable order."""
    out: dict[tuple[str, str, str, str], list[dict]] = defaultdict(list)
    for r in records:
        out[(r["model"], r["dataset"], r["budget"], budget_key(r))].append(r)
    return dict(sorted(out.items()))


def group_name(key: tuple[str, str, str, str], keys: list[tuple]) -> tuple[str, str]:
    """(file stem part, title part) for a group; the budget hash only where needed."""
    model, dataset, budget, bhash = key
    clash = sum(k[:3] == key[:3] for k in keys) > 1
    stem = "-".join([model, dataset, budget] + ([bhash] if clash else []))
    title = f"{model} · {dataset} · budget {budget}" + (f" ({bhash})" if clash else "")
    return stem, title


def kwargs_label(rec: dict[str, Any]) -> str:
    kw = rec["config"].get("model_kwargs") or {}
    return ",".join(f"{k}={v}" for k, v in kw.items())


def run_label(rec: dict[str, Any]) -> str:
    """The method or pipeline a run ran (`at`, `cheapconv+at`, `deep_compression`)."""
    return rec.get("label", rec["method"])


def series_label(rec: dict[str, Any]) -> str:
    """What a figure colours a run by: its method, plus any non-default training setting
    (an IoU-loss baseline is not the cross-entropy one)."""
    import dataclasses

    from bench.spec import TrainConfig

    defaults = dataclasses.asdict(TrainConfig())
    diff = [f"{k}={v}" for k, v in (rec["config"].get("train") or {}).items()
            if defaults.get(k) != v]
    return run_label(rec) + (f" [train {','.join(diff)}]" if diff else "")


def method_label(rec: dict[str, Any]) -> str:
    """The leaderboard's name of a run's method, with its non-default settings."""
    from bench.method import stages_from_record

    try:
        parts = [s.method.describe() for s in stages_from_record(rec["config"]["stages"])]
    except Exception:  # a record of a plugin that is no longer installed
        parts = []
    cfg = "; ".join(p for p in parts if p)
    return run_label(rec) + (f" ({cfg})" if cfg else "")


def artifact_path(rec: dict[str, Any], results: Path) -> Path:
    p = Path(rec["artifact"])
    return p if p.is_absolute() else Path(results) / p
