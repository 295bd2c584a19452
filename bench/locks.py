"""Per-key file locks on a results directory, so two grids (or Ray workers on one host)
sharing it never train a baseline twice, run a run twice, or race on a temporary file.

A lock is an OS file lock (`filelock`, `flock` underneath): the kernel drops it when its
holder dies, even by `kill -9`, so a crashed grid never blocks the next one. Locks live in
`<results>/cache/locks/`. Order, so no two processes can wait on each other: a run's lock
is taken before the baseline locks it needs, and no run lock is taken under a baseline
lock; a lock only tried (`try_locked`, which never waits) can be taken under any other,
as the work-stealing local executor (`bench.steal`) does to look past busy runs. The
locks reach as far as the filesystem's `flock`: one host, or every node on NFS
(or Lustre mounted with `-o flock`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

# when this process started (close enough: the module is imported at start); a temporary
# file older than this, whose key no live process holds, is an orphan of a killed writer
STARTED = time.time()


def lock_path(results: Path, kind: str, key: str) -> Path:
    return Path(results) / "cache" / "locks" / f"{kind}-{key}.lock"


def _lock(results: Path, kind: str, key: str) -> FileLock:
    path = lock_path(results, kind, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


@contextmanager
def locked(results: Path, kind: str, key: str) -> Iterator[None]:
    """Hold the `kind` lock of `key` (waiting, with one line on stderr, if another
    process holds it)."""
    lock = _lock(results, kind, key)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for {kind} {key}: another process holds its lock", file=sys.stderr)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def try_locked(results: Path, kind: str, key: str) -> Iterator[bool]:
    """Hold the lock if nobody else does; yields whether it was taken."""
    lock = _lock(results, kind, key)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def wait_free(results: Path, kind: str, key: str) -> None:
    """Block until nobody holds the `kind` lock of `key`, taking it and dropping it at once:
    a waiter that holds nothing while it waits cannot be part of a deadlock."""
    lock = _lock(results, kind, key)
    lock.acquire()
    lock.release()


def _temp_owner(path: Path, results: Path) -> tuple[str, str] | None:
    """(lock kind, key) guarding a temporary file of an atomic write, or None if no lock
    guards it. `bench.atomic` names them `.<target>.<random>.tmp`; older checkpoints
    were written to `<key>.tmp`."""
    name = path.name
    target = name[1:-4].rsplit(".", 1)[0] if name.startswith(".") else name[:-4]
    rel = path.relative_to(results).parts
    if rel[:2] == ("cache", "baselines"):
        return "baseline", target.split(".", 1)[0]
    if rel[0] == "runs":
        return "run", target.split(".", 1)[0]
    if rel[0] == "artifacts" and len(rel) > 2:
        return "run", rel[1]
    return None


def clean_orphan_temps(results: Path) -> list[Path]:
    """Remove the temporary files killed writers left (`*.tmp` older than this process)
    whose key no live process holds, under that key's lock; returns those removed."""
    results = Path(results)
    removed = []
    for sub in ("runs", "artifacts", "cache/baselines"):
        d = results / sub
        if not d.is_dir():
            continue
        for p in sorted(d.rglob("*.tmp")):
            owner = _temp_owner(p, results)
            if owner is None:
                continue
            with try_locked(results, *owner) as mine:
                try:
                    if mine and p.stat().st_mtime < STARTED:
                        p.unlink()
                        removed.append(p)
                except FileNotFoundError:
                    pass
    if removed:
        print(f"removed {len(removed)} temporary file(s) left by killed processes in "
              f"{results}", file=sys.stderr)
    return removed
