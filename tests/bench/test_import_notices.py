"""torch's import-time notices about optional toolkits stay off stderr, where a user looks
for errors, and nothing else of those loggers does."""

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from bench.runtimes import IMPORT_NOTICES, quiet_import

ROOT = Path(__file__).resolve().parents[2]
NOTICES = ("No CUDA runtime is found", "is an Enum subclass")


HAVE_EXECUTORCH = all(importlib.util.find_spec(p) for p in ("torchao", "executorch"))


def test_a_dry_run_prints_no_toolkit_import_notice(tmp_path):
    """Loading the method plugins imports brevitas (torch's CUDA_HOME notice);
    `--set runtimes=executorch` imports torchao (torch's register_constant notice). One
    subprocess for both, as a user runs it."""
    extra = ["--set", "runtimes=torch,executorch"] if HAVE_EXECUTORCH else []
    out = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--method", "none", "--model", "enet",
         "--budget", "smoke", "--results", str(tmp_path), "--dry-run", *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert not [n for n in NOTICES if n in out.stderr], out.stderr


class _Keep(logging.Handler):
    def __init__(self):
        super().__init__()
        self.seen = []

    def emit(self, record):
        self.seen.append(record.getMessage())


@pytest.mark.parametrize("name", sorted(IMPORT_NOTICES))
def test_only_the_named_notice_and_only_during_the_import_is_dropped(name):
    logger, keep = logging.getLogger(name), _Keep()
    logger.addHandler(keep)
    try:
        notice = IMPORT_NOTICES[name] + " (text)"
        with quiet_import():
            logger.warning(notice)
            logger.warning("a real warning")
        logger.warning(notice)
    finally:
        logger.removeHandler(keep)
    assert keep.seen == ["a real warning", notice]
