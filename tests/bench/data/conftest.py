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


def tiny_camvid_spec(method: str = "none"):
    """A RunSpec on a fixture CamVid tree: two images a split, 32-pixel crops, batch 2."""
    from bench.budgets import get_budget
    from bench.method import expand_methods
    from bench.spec import RunSpec

    budget = get_budget("smoke", {"train_images": 2, "eval_images": 2, "batch_size": 2,
                                  "crop_size": 32, "latency_runs": 2, "latency_warmup": 1,
                                  "calibration_images": 2}, dataset="camvid")
    (v,) = expand_methods(method, {})
    return RunSpec(model="enet", method=v.spec, label=v.label, stages=v.resolved(),
                   dataset="camvid", budget=budget, seed=0)


@pytest.fixture
def trees():
    return SimpleNamespace(camvid=camvid_tree, image=write_image, label=write_label,
                           spec=tiny_camvid_spec)
