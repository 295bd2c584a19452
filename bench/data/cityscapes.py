"""Cityscapes fine annotations: 19 training ids, everything else 255. Reads
`*_labelTrainIds.png` when present, otherwise maps the raw `*_labelIds.png`. The public
test labels are empty, so `test` is the val split."""

from __future__ import annotations

from pathlib import Path

from bench.data.base import DatasetInfo, DatasetLayoutError, register_dataset, require_dir
from bench.data.folder import PairedFiles, known_values, label_lut

CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light",
           "traffic_sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
           "bus", "train", "motorcycle", "bicycle")
# raw labelId -> trainId (cityscapesScripts labels.py)
LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                  24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
LAYOUT = """  <root>/leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png
  <root>/gtFine/{train,val}/<city>/<name>_gtFine_labelIds.png
  (or <name>_gtFine_labelTrainIds.png, made by cityscapesScripts)"""


def _build(split: str, root: Path, budget, seed: int, train: bool):
    root = Path(root)
    split = "val" if split == "test" else split
    img_root = require_dir(root / "leftImg8bit" / split, "cityscapes", LAYOUT)
    gt_root = require_dir(root / "gtFine" / split, "cityscapes", LAYOUT)
    images = sorted(img_root.glob("*/*_leftImg8bit.png"))
    if not images:
        raise DatasetLayoutError(f"cityscapes: no images under {img_root}. Expected:\n{LAYOUT}")
    pairs, use_train_ids = [], None
    for img in images:
        stem = img.name[: -len("_leftImg8bit.png")]
        d = gt_root / img.parent.name
        tid, lid = d / f"{stem}_gtFine_labelTrainIds.png", d / f"{stem}_gtFine_labelIds.png"
        if use_train_ids is None:
            use_train_ids = tid.is_file()
        lab = tid if use_train_ids else lid
        if not lab.is_file():
            raise DatasetLayoutError(f"cityscapes: label {lab} for {img} is missing")
        pairs.append((img, lab))
    mapping = {i: i for i in range(19)} if use_train_ids else LABEL_TO_TRAIN
    limit = budget.train_images if split == "train" else budget.eval_images
    # labelIds 0-33 all exist (those without a trainId are void), -1 is stored as 255
    void = (255,) if use_train_ids else (*range(34), 255)
    return PairedFiles(pairs, label_lut(mapping, 255), 255, train, budget, seed,
                       "cityscapes", limit, known_values(mapping, void), num_classes=19)


register_dataset(DatasetInfo(name="cityscapes", num_classes=19, ignore_index=255,
                             class_names=CLASSES, needs_root=True, builder=_build,
                             layout=LAYOUT))
