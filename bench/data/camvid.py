"""CamVid in the layout of the SegNet tutorial (the one most papers use): 11 classes,
raw label 11 = void (ignored), 367/101/233 images at 360x480.

Version 2: evaluation honours the budget's eval_size (v1 always evaluated at native size,
whatever the record said), and images may be resized to the budget's working size."""

from __future__ import annotations

from pathlib import Path

from bench.data.base import DatasetInfo, DatasetLayoutError, register_dataset, require_dir
from bench.data.folder import PairedFiles, known_values, label_lut, pair_by_stem

CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence",
           "car", "pedestrian", "bicyclist")
LAYOUT = """  <root>/train/*.png       <root>/trainannot/*.png
  <root>/val/*.png         <root>/valannot/*.png
  <root>/test/*.png        <root>/testannot/*.png
  (labels: same file name, values 0-10 = classes, 11 = void)"""


def _build(split: str, root: Path, budget, seed: int, train: bool):
    root = Path(root)
    img_dir = require_dir(root / split, "camvid", LAYOUT)
    lab_dir = require_dir(root / f"{split}annot", "camvid", LAYOUT)
    images = [p for p in img_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    if not images:
        raise DatasetLayoutError(f"camvid: no images in {img_dir}. Expected layout:\n{LAYOUT}")
    pairs = pair_by_stem(images, lab_dir, "camvid")
    limit = budget.train_images if split == "train" else budget.eval_images
    mapping = {i: i for i in range(11)}
    return PairedFiles(pairs, label_lut(mapping, 255), 255, train, budget, seed, "camvid",
                       limit, known_values(mapping, (11,)), num_classes=11)


register_dataset(DatasetInfo(name="camvid", num_classes=11, ignore_index=255,
                             class_names=CLASSES, needs_root=True, builder=_build,
                             layout=LAYOUT, version="2"))
