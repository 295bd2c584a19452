"""PASCAL VOC 2012 segmentation: 21 classes, 255 ignored. Trains on the SBD-augmented
"trainaug" list (10,582 images) when it is present, as DeepLab and its successors do;
VOC has no public test labels, so `test` is the val split."""

from __future__ import annotations

from pathlib import Path

from bench.data.base import DatasetInfo, DatasetLayoutError, register_dataset, require_dir
from bench.data.folder import PairedFiles, known_values, label_lut

CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
           "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
           "pottedplant", "sheep", "sofa", "train", "tvmonitor")
LAYOUT = """  <root>/JPEGImages/<id>.jpg
  <root>/SegmentationClass/<id>.png            (palette PNG, 255 = ignore)
  <root>/ImageSets/Segmentation/train.txt, val.txt
  optional SBD aug: <root>/SegmentationClassAug/<id>.png and
                    <root>/ImageSets/Segmentation/trainaug.txt (or train_aug.txt)
  (<root> is VOCdevkit/VOC2012)"""


def _ids(path: Path) -> list[str]:
    return [line.strip().split()[0] for line in path.read_text().splitlines() if line.strip()]


def _build(split: str, root: Path, budget, seed: int, train: bool):
    root = Path(root)
    require_dir(root / "JPEGImages", "voc", LAYOUT)
    sets = require_dir(root / "ImageSets" / "Segmentation", "voc", LAYOUT)
    label_dir = root / "SegmentationClass"
    list_file = sets / ("train.txt" if split == "train" else "val.txt")
    if split == "train":
        for aug in ("trainaug.txt", "train_aug.txt"):
            if (sets / aug).is_file() and (root / "SegmentationClassAug").is_dir():
                list_file, label_dir = sets / aug, root / "SegmentationClassAug"
                break
    if not list_file.is_file():
        raise DatasetLayoutError(f"voc: split list {list_file} is missing. Expected:\n{LAYOUT}")
    pairs = []
    for i in _ids(list_file):
        img, lab = root / "JPEGImages" / f"{i}.jpg", label_dir / f"{i}.png"
        if not (img.is_file() and lab.is_file()):
            raise DatasetLayoutError(f"voc: {list_file.name} lists {i!r} but {img} or {lab} "
                                     f"is missing")
        pairs.append((img, lab))
    limit = budget.train_images if split == "train" else budget.eval_images
    mapping = {i: i for i in range(21)}
    return PairedFiles(pairs, label_lut(mapping, 255), 255, train, budget, seed, "voc",
                       limit, known_values(mapping, (255,)), num_classes=21)


register_dataset(DatasetInfo(name="voc", num_classes=21, ignore_index=255, class_names=CLASSES,
                             needs_root=True, builder=_build, layout=LAYOUT,
                             variable_size=True))
