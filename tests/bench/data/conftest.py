"""Tiny real-dataset trees the tests write themselves (no test reads real data)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image


def write_image(path, h=12, w=20, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def write_label(path, values, h=12, w=20, dtype=np.uint8):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.resize(np.array(values, dtype=dtype), (h, w))
    Image.fromarray(arr).save(path)  # uint8 -> mode L, uint16 -> a 16-bit PNG


def camvid_tree(root, splits=("train", "val"), n=2, h=12, w=20,
                values=(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)):
    """A CamVid tree in the SegNet layout with every class (and void) in every label."""
    for split in splits:
        for i in range(n):
            write_image(root / split / f"f{i}.png", h, w, seed=i)
            write_label(root / f"{split}annot" / f"f{i}.png", list(values), h, w)
    return root


@pytest.fixture
def trees():
    return SimpleNamespace(camvid=camvid_tree, image=write_image, label=write_label)
