"""`python -m bench verify --reference`: the committed reference is what its committed run
records say, byte for byte.

A reader who doubts a published number can run this on a fresh clone: every leaderboard
file under `results/reference/<dataset>-<budget>/` is regenerated from that folder's
`runs/*.json` and compared with the committed bytes, and every run whose artifact is present
is reloaded and re-evaluated exactly as `verify` does.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.layout import REFERENCE_ROOT, reference_dirs
from bench.leaderboard import render_leaderboard
from bench.records import OK, iter_records


def leaderboard_problems(ref: Path) -> list[str]:
    """Differences between the committed leaderboard files and what the records produce."""
    malformed: list[Path] = []
    expected = render_leaderboard(ref, malformed)
    problems = [f"{p.relative_to(ref).as_posix()}: malformed record" for p in malformed]
    for rel, text in sorted(expected.items()):
        path = ref / rel
        if not path.is_file():
            problems.append(f"{rel}: missing, though its records produce it")
            continue
        got = path.read_bytes()
        if got != text.encode("utf-8"):
            problems.append(f"{rel}: differs from what its records regenerate"
                            f"{_first_difference(got.decode('utf-8', 'replace'), text)}")
    committed = [ref / "leaderboard.md", ref / "leaderboard.csv",
                 *sorted((ref / "models").glob("*.md"))]
    for path in committed:
        rel = path.relative_to(ref).as_posix()
        if path.is_file() and rel not in expected:
            problems.append(f"{rel}: committed, but no record produces it")
    return problems


def _first_difference(got: str, want: str) -> str:
    a, b = got.splitlines(), want.splitlines()
    for i, (x, y) in enumerate(zip(a, b), start=1):
        if x != y:
            return f" (first at line {i})"
    return f" ({len(a)} lines committed, {len(b)} regenerated)"


def artifact_problems(ref: Path, device_name: str = "cpu") -> dict[str, list[str]]:
    """Re-evaluate the runs whose artifacts are present (artifacts are not committed: a
    maintainer who re-ran the grid, or a user who fetched them, has them)."""
    from bench.verify import verify_record

    bad = {}
    for rec in iter_records(ref):
        art = rec.get("artifact")
        if rec.get("status") != OK or not art or not (ref / art).is_file():
            continue
        try:
            problems = verify_record(rec, ref, device_name)
        except Exception as e:  # one bad artifact must not hide the others
            problems = [f"{type(e).__name__}: {e}"]
        if problems:
            bad[rec["run_id"]] = problems
    return bad


def verify_reference(root: Path = REFERENCE_ROOT, device_name: str = "cpu") -> int:
    """Check every reference folder; 0 when all pass, 1 otherwise (none is a failure: there
    is nothing to trust)."""
    refs = reference_dirs(root)
    if not refs:
        print(f"verify --reference: no reference results (no {root}/*/runs/)", file=sys.stderr)
        return 1
    failed = 0
    for ref in refs:
        problems = leaderboard_problems(ref)
        for run_id, ps in artifact_problems(ref, device_name).items():
            problems += [f"run {run_id}: {p}" for p in ps]
        n = sum(1 for _ in iter_records(ref))
        for p in problems:
            print(f"FAIL {ref}: {p}", file=sys.stderr)
        status = "ok" if not problems else f"{len(problems)} problem(s)"
        print(f"{ref}: {n} records, leaderboard regenerated: {status}", file=sys.stderr)
        failed += bool(problems)
    failed += excerpts_fail(root)
    return 1 if failed else 0


def excerpts_fail(root: Path = REFERENCE_ROOT) -> bool:
    """The docs quote the references (bench/excerpts.py), so a quoted block that its
    records no longer generate fails the check too; each stale or unreadable block is
    named on stderr."""
    from bench.excerpts import ExcerptError, check, default_files

    try:
        problems, n = check(default_files(), root)
    except ExcerptError as e:
        problems, n = [str(e)], 0
    for p in problems:
        print(f"FAIL docs: {p}", file=sys.stderr)
    print(f"docs: {n} excerpt block(s) of the references, "
          f"{'all current' if not problems else f'{len(problems)} problem(s)'}",
          file=sys.stderr)
    return bool(problems)
