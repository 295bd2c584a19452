"""What the harness needs to know about a dataset, and the dataset registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import Dataset

from bench.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    ignore_index: int
    class_names: tuple[str, ...]
    needs_root: bool  # real datasets read files under --data-root
    # builder(split, root, budget, seed, train) -> SegDataset yielding (image, target)
    builder: Callable[..., SegDataset] = field(repr=False, compare=False, default=None)
    layout: str = ""  # the expected directory layout, quoted in errors
    variable_size: bool = False  # images differ in size: evaluate one at a time
    # part of every run's identity: a generator or preprocessing change must not let
    # results computed on the old data be resumed as if they were current
    version: str = "1"


DATASETS: Registry[DatasetInfo] = Registry("dataset")
SPLITS = ("train", "val", "test")


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    return DATASETS.add(info.name, info)


class SegDataset(Dataset):
    """A split the harness trains or evaluates on: yields (image, target) pairs. Declares
    what the harness asks of every split, so nothing is read with getattr."""

    # every image of the split has one size at the working resolution, so evaluation may
    # stack them in batches (a real tree of mixed sizes says False once it is indexed)
    uniform_size: bool = True


class DatasetLayoutError(FileNotFoundError):
    """A real dataset's directory tree is missing or malformed."""


def require_dir(path: Path, dataset: str, layout: str) -> Path:
    if not path.is_dir():
        raise DatasetLayoutError(
            f"{dataset}: expected directory {path} does not exist. Expected layout under "
            f"--data-root:\n{layout}"
        )
    return path
