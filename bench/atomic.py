"""Atomic file writes, the one helper every writer in the project uses.

A file is written to a temporary sibling, flushed to disk and renamed over its target,
so a crash or Ctrl-C leaves either the old file or the new one, never half of one, and a
resumed grid can trust every record, artifact, table or figure it finds. The temporary
file is given the permissions a plain `open()` would give (0666 less the umask): left as
`mkstemp` makes it, every result would be readable by its owner only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()


def atomic_write(path: Path | str, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(f)` on a temporary binary file next to `path`, then rename it to `path`.

    If `write` raises (or the process is interrupted), `path` is untouched and the
    temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
