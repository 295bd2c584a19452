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

OK, FAILED, NOT_APPLICABLE = "ok", "failed", "not applicable"
# statuses a re-run keeps: an ok run is done, and a run that does not apply to its model
# (`bench.method.NotApplicable`) would not apply again; a failed run is retried
FINAL_STATUSES = (OK, NOT_APPLICABLE)


def is_final(rec: dict[str, Any] | None) -> bool:
    return rec is not None and rec.get("status") in FINAL_STATUSES


def runs_dir(results: Path) -> Path:
    return Path(results) / "runs"


def record_path(results: Path, run_id: str) -> Path:
    return runs_dir(results) / f"{run_id}.json"


def write_record(results: Path, record: dict[str, Any]) -> Path:
    path = record_path(results, record["run_id"])
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return path


def read_record(results: Path, run_id: str) -> dict[str, Any] | None:
    path = record_path(results, run_id)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError) as e:
        print(f"warning: ignoring unreadable record {path}: {e}", file=sys.stderr)
        return None


def stale_reason(rec: dict[str, Any]) -> str | None:
    """Why a record no longer describes the current data (see `bench.spec.stale_reason`)."""
    from bench.spec import stale_reason as config_stale_reason

    return config_stale_reason(rec.get("config") or {})


def iter_records(results: Path, include_stale: bool = False) -> Iterator[dict[str, Any]]:
    """Every readable record; records computed on an older version of their dataset are
    left out (and counted on stderr) unless asked for, so no table mixes two datasets."""
    d = runs_dir(results)
    if not d.is_dir():
        return
    stale = 0
    for p in sorted(d.glob("*.json")):
        try:
            rec = json.loads(p.read_text())
        except (json.JSONDecodeError, OSError) as e:
            print(f"warning: ignoring unreadable record {p}: {e}", file=sys.stderr)
            continue
        if not include_stale and stale_reason(rec):
            stale += 1
            continue
        yield rec
    if stale:
        print(f"warning: ignoring {stale} record(s) in {d} computed on an older version of "
              f"their dataset; re-run them (`python -m bench leaderboard` lists them)",
              file=sys.stderr)
