"""Run records on disk: one JSON file per run, written atomically (temp file + rename),
so a crash or Ctrl-C never leaves a half-written record and a re-run can trust every
record it finds."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write_text
from bench.digest import file_sha256

OK, FAILED, NOT_APPLICABLE = "ok", "failed", "not applicable"
# statuses a re-run keeps: an ok run is done, and a run that does not apply to its model
# (`bench.method.NotApplicable`) would not apply again; a failed run is retried
FINAL_STATUSES = (OK, NOT_APPLICABLE)


class GridRecords(list):
    """The records of a grid, each run's once, and where they came from: `resumed`, the
    run ids already final when the grid started; `elsewhere`, those another process
    sharing the results directory finished meanwhile; the rest ran in this grid."""

    def __init__(self, records=(), resumed=(), elsewhere=()):
        super().__init__(records)
        self.resumed: set[str] = set(resumed)
        self.elsewhere: set[str] = set(elsewhere)


def is_final(rec: dict[str, Any] | None) -> bool:
    return rec is not None and rec.get("status") in FINAL_STATUSES


def artifact_path(results: Path, rec: dict[str, Any]) -> Path:
    path = Path(rec["artifact"])
    return path if path.is_absolute() else Path(results) / path


def artifact_problem(results: Path, rec: dict[str, Any]) -> str | None:
    """Why an ok record's artifact is not the file it measured (missing, another size,
    other bytes than its recorded SHA-256), or None."""
    if not isinstance(rec.get("artifact"), str):
        return "the record names no artifact"
    path = artifact_path(results, rec)
    try:
        size = path.stat().st_size
    except OSError:
        return f"artifact {path} is missing"
    if size != rec["metrics"]["size_bytes"]:
        return f"artifact {path} is {size} B, the record measured {rec['metrics']['size_bytes']} B"
    want = rec.get("artifact_sha256")
    if want is not None and file_sha256(path) != want:
        return f"artifact {path} does not hash to the recorded SHA-256"
    return None


def is_done(rec: dict[str, Any] | None, results: Path) -> bool:
    """The resume rule: a final record, and for an ok one its artifact intact (a missing
    or corrupt artifact is named on stderr and the run is done again)."""
    if not is_final(rec):
        return False
    if rec["status"] == OK:
        problem = artifact_problem(results, rec)
        if problem:
            print(f"warning: re-running {rec['run_id']}: {problem}", file=sys.stderr)
            return False
    return True


def runs_dir(results: Path) -> Path:
    return Path(results) / "runs"


def record_path(results: Path, run_id: str) -> Path:
    return runs_dir(results) / f"{run_id}.json"


def write_record(results: Path, record: dict[str, Any]) -> Path:
    path = record_path(results, record["run_id"])
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return path


_NUMBER = (int, float)
# what every reader (leaderboard, verify, tables, plots, resume) takes from a record
_TOP = {"run_id": str, "status": str, "model": str, "method": str, "dataset": str,
        "budget": str, "seed": int, "config": dict}
_OK_TOP = {"metrics": dict}
_OK_METRICS = ("miou", "pixel_acc", "params", "nonzero_params", "sparsity", "size_bytes",
               "compression_ratio", "madds", "effective_madds", "latency_ms", "latency_iqr_ms")
_OPTIONAL = {"env": dict, "extras": dict, "cost": dict, "baseline": dict, "timings": dict,
             "error": str, "label": str, "artifact": str, "baseline_run_id": str,
             "artifact_sha256": str, "retimed": dict}


def _type_name(t) -> str:
    return "number" if t is _NUMBER else t.__name__


def _is(value: Any, t) -> bool:
    if isinstance(value, bool):  # JSON true is no number, no int
        return t is bool
    return isinstance(value, t)


def record_problem(rec: Any, run_id: str | None = None) -> str | None:
    """What makes `rec` unusable as a run record, or None. The one schema check every
    reader applies, so a malformed record is named and skipped (and re-run by `run`)
    instead of raising deep inside a table."""
    if not isinstance(rec, dict):
        return f"a record must be a JSON object, not {type(rec).__name__}"
    for key, t in _TOP.items():
        if key not in rec:
            return f"missing key {key!r}"
        if not _is(rec[key], t):
            return f"{key!r} must be a {_type_name(t)}, not {type(rec[key]).__name__}"
    if run_id is not None and rec["run_id"] != run_id:
        return f"its run_id {rec['run_id']!r} does not match its file name"
    if rec["status"] not in (OK, FAILED, NOT_APPLICABLE):
        return f"unknown status {rec['status']!r}; valid: {OK}, {FAILED}, {NOT_APPLICABLE}"
    for key, t in _OPTIONAL.items():
        if rec.get(key) is not None and not _is(rec[key], t):
            return f"{key!r} must be a {_type_name(t)}, not {type(rec[key]).__name__}"
    if rec["status"] != OK:
        return None
    for key, t in _OK_TOP.items():
        if not _is(rec.get(key), t):
            return f"an ok record needs {key!r} as a {_type_name(t)}"
    m = rec["metrics"]
    for key in _OK_METRICS:
        if not _is(m.get(key), _NUMBER):
            return f"metrics.{key} must be a number, not {m.get(key)!r:.40}"
    pci = m.get("per_class_iou", [])
    if not isinstance(pci, list) or not all(v is None or _is(v, _NUMBER) for v in pci):
        return "metrics.per_class_iou must be a list of numbers or nulls"
    cost = rec.get("cost") or {}
    if "total_s" in cost and not _is(cost["total_s"], _NUMBER):
        return "cost.total_s must be a number"
    return None


def _load(path: Path, run_id: str | None = None) -> dict[str, Any] | None:
    """The record at `path`, or None (with one line on stderr) if it cannot be used."""
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        problem = f"unreadable ({e})"
    else:
        problem = record_problem(rec, run_id if run_id is not None else path.stem)
        if problem is None:
            return rec
    print(f"warning: ignoring malformed record {path}: {problem}", file=sys.stderr)
    return None


def read_record(results: Path, run_id: str) -> dict[str, Any] | None:
    """The record of `run_id`; None if absent or malformed (a malformed one is named on
    stderr, and `run` treats it as not done)."""
    return _load(record_path(results, run_id), run_id)


def stale_reason(rec: dict[str, Any]) -> str | None:
    """Why a record no longer describes the current data (see `bench.spec.stale_reason`)."""
    from bench.spec import stale_reason as config_stale_reason

    return config_stale_reason(rec.get("config") or {})


def iter_records(results: Path, include_stale: bool = False,
                 malformed: list[Path] | None = None) -> Iterator[dict[str, Any]]:
    """Every valid record; a malformed one is named on stderr, skipped and appended to
    `malformed`. Records computed on an older version of their dataset are left out (and
    counted on stderr) unless asked for, so no table mixes two datasets."""
    d = runs_dir(results)
    if not d.is_dir():
        return
    stale = 0
    for p in sorted(d.glob("*.json")):
        rec = _load(p)
        if rec is None:
            if malformed is not None and p.exists():
                malformed.append(p)
            continue
        if not include_stale and stale_reason(rec):
            stale += 1
            continue
        yield rec
    if stale:
        print(f"warning: ignoring {stale} record(s) in {d} computed on an older version of "
              f"their dataset; re-run them (`python -m bench leaderboard` lists them)",
              file=sys.stderr)
