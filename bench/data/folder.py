"""Image/label pairs read from local disk: the common part of the real-dataset loaders.

Each loader finds its files and says how raw label values map to training ids (a lookup
table; unlisted values become the ignore index) and which raw values are void; this
class checks and decodes the split once (bench/data/cache.py), then transforms.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bench.data.base import DatasetLayoutError, SegDataset
from bench.data.cache import decode_pair, scan
from bench.data.transforms import eval_resize, sample_generator, to_tensors, train_augment


def label_lut(mapping: dict[int, int], ignore_index: int) -> np.ndarray:
    lut = np.full(256, ignore_index, dtype=np.uint8)
    for raw, train_id in mapping.items():
        lut[raw] = train_id
    return lut


def known_values(mapping: dict[int, int], void: Iterable[int]) -> np.ndarray:
    """Raw label values the dataset defines (a class or void), as a 256-entry mask."""
    mask = np.zeros(256, dtype=bool)
    mask[list(mapping)] = True
    mask[list(void)] = True
    return mask


class PairedFiles(SegDataset):
    def __init__(self, pairs: list[tuple[Path, Path]], lut: np.ndarray, ignore_index: int,
                 train: bool, budget, seed: int, name: str, limit: int | None = None,
                 known: np.ndarray | None = None, num_classes: int | None = None):
        if not pairs:
            raise DatasetLayoutError(f"{name}: no image/label pairs found")
        self.pairs = pairs[:limit] if limit else pairs
        self.lut, self.ignore_index = lut, ignore_index
        self.train, self.seed, self.epoch = train, seed, 0
        self.crop, self.eval_size = budget.crop_size, budget.eval_size
        self.work_size, self.scale_range = budget.work_size, budget.scale_range
        self.name = name
        if known is None:
            known = lut != ignore_index
        if num_classes is None:
            num_classes = int(lut[lut != ignore_index].max()) + 1
        self.meta, self.arrays = scan(self.pairs, lut, known, ignore_index, num_classes,
                                      self.work_size, name)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def uniform_size(self) -> bool:
        """Every image of the split has one size at the working resolution, so evaluation
        may stack them in batches (else it evaluates one image at a time)."""
        return not self.meta.get("mixed_sizes")

    def class_pixel_counts(self) -> np.ndarray:
        """Labelled pixels per class at the working resolution (from the cached index)."""
        return np.asarray(self.meta["class_pixel_counts"], dtype=np.int64)

    def __getitem__(self, i: int):
        if self.arrays is not None:
            image, label = self.arrays[i]
        else:
            image, label, _ = decode_pair(*self.pairs[i], self.lut, self.work_size, self.name)
        img, lab = to_tensors(image, label)
        if self.train:
            return train_augment(img, lab, self.crop, self.ignore_index,
                                 sample_generator(self.seed, self.epoch, i), self.scale_range)
        return eval_resize(img, lab, self.eval_size)


def pair_by_stem(images: list[Path], label_dir: Path, name: str, suffix: str = ".png",
                 stem_map=lambda s: s) -> list[tuple[Path, Path]]:
    pairs = []
    for img in sorted(images):
        lab = label_dir / f"{stem_map(img.stem)}{suffix}"
        if not lab.is_file():
            raise DatasetLayoutError(f"{name}: label file {lab} for image {img} is missing")
        pairs.append((img, lab))
    return pairs
