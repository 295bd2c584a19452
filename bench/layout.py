"""Where results live, and the one rule that protects the committed reference.

A user's runs go to `results/local/` (git-ignored), so the first command of the README
cannot rewrite what the project publishes. The reference results live in
`results/reference/<dataset>-<budget>/`: leaderboard, per-model reports, figures and the run
records they were made from, so `python -m bench verify --reference` can regenerate them and
compare byte for byte. Only a command given `--update-reference` may write there.
"""

from __future__ import annotations

from pathlib import Path

RESULTS_ROOT = Path("results")
USER_RESULTS = RESULTS_ROOT / "local"
REFERENCE_ROOT = RESULTS_ROOT / "reference"


class ProtectedResultsError(Exception):
    """A command would write into the committed reference without `--update-reference`."""


def reference_dir(dataset: str, budget: str, root: Path = REFERENCE_ROOT) -> Path:
    return Path(root) / f"{dataset}-{budget}"


def reference_dirs(root: Path = REFERENCE_ROOT) -> list[Path]:
    """Every committed reference (a folder under `root` that holds run records)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "runs").is_dir())


def is_reference(path: Path, root: Path = REFERENCE_ROOT) -> bool:
    path, root = Path(path).resolve(), Path(root).resolve()
    return path == root or root in path.parents


def guard_write(results: Path, update_reference: bool, root: Path = REFERENCE_ROOT) -> None:
    """Refuse to write into the reference unless asked to, and refuse `--update-reference`
    pointed anywhere else (a typo would otherwise pass silently)."""
    inside = is_reference(results, root)
    if inside and not update_reference:
        raise ProtectedResultsError(
            f"{results} is committed reference results; write your runs elsewhere (default "
            f"{USER_RESULTS}) or pass --update-reference to regenerate the reference")
    if update_reference and not inside:
        raise ProtectedResultsError(
            f"--update-reference writes only under {root}/<dataset>-<budget>, not {results}")
