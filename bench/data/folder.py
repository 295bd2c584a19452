"""Image/label pairs read from local disk: the common part of the real-dataset loaders.

Each loader finds its files and says how raw label values map to training ids (a lookup
table; unlisted values become the ignore index); this class reads, maps and transforms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from bench.data.base import DatasetLayoutError
from bench.data.transforms import eval_resize, sample_generator, to_tensors, train_augment


def label_lut(mapping: dict[int, int], ignore_index: int) -> np.ndarray:
    lut = np.full(256, ignore_index, dtype=np.uint8)
    for raw, train_id in mapping.items():
        lut[raw] = train_id
    return lut


class PairedFiles(Dataset):
    def __init__(self, pairs: list[tuple[Path, Path]], lut: np.ndarray, ignore_index: int,
                 train: bool, crop: int, eval_size: int | None, seed: int, name: str,
                 limit: int | None = None):
        if not pairs:
            raise DatasetLayoutError(f"{name}: no image/label pairs found")
        self.pairs = pairs[:limit] if limit else pairs
        self.lut, self.ignore_index = lut, ignore_index
        self.train, self.crop, self.eval_size, self.seed, self.epoch = (
            train, crop, eval_size, seed, 0)
        self.name = name

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        img_path, lab_path = self.pairs[i]
        try:
            image = np.array(Image.open(img_path).convert("RGB"))
            raw = np.array(Image.open(lab_path))
        except OSError as e:
            raise DatasetLayoutError(
                f"{self.name}: cannot read {img_path} / {lab_path}: {e}"
            ) from e
        if raw.ndim != 2 or raw.shape != image.shape[:2]:
            raise DatasetLayoutError(
                f"{self.name}: label {lab_path} has shape {raw.shape}, image {img_path} has "
                f"{image.shape[:2]}; labels must be single-channel maps of the image's size"
            )
        img, lab = to_tensors(image, self.lut[raw])
        if self.train:
            return train_augment(img, lab, self.crop, self.ignore_index,
                                 sample_generator(self.seed, self.epoch, i))
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
