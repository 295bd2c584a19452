"""Real-dataset loaders on tiny fixture trees the tests make themselves."""

import numpy as np
import pytest
import torch
from PIL import Image

from bench.budgets import get_budget
from bench.data import DATASETS, DatasetLayoutError

BUDGET = get_budget("smoke", {"crop_size": 16})


def _img(path, h=12, w=20, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def _lab(path, values, h=12, w=20):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.resize(np.array(values, dtype=np.uint8), (h, w))
    Image.fromarray(arr, mode="L").save(path)


def _build(name, root, split="train", train=False):
    return DATASETS.get(name).builder(split, root, BUDGET, 0, train)


def test_camvid_segnet_layout_maps_void_to_ignore(tmp_path):
    for split in ("train", "val", "test"):
        for i in range(2):
            _img(tmp_path / split / f"f{i}.png", seed=i)
            _lab(tmp_path / f"{split}annot" / f"f{i}.png", [0, 3, 10, 11])
    ds = _build("camvid", tmp_path, "val")
    assert len(ds) == 2
    x, y = ds[0]
    assert x.shape == (3, 12, 20) and y.dtype == torch.long
    assert set(torch.unique(y).tolist()) == {0, 3, 10, 255}
    xt, yt = _build("camvid", tmp_path, "train", train=True)[1]
    assert xt.shape == (3, 16, 16) and yt.shape == (16, 16)


def test_camvid_missing_tree_names_the_layout(tmp_path):
    with pytest.raises(DatasetLayoutError, match="trainannot"):
        _build("camvid", tmp_path)


def test_camvid_missing_label_names_the_file(tmp_path):
    _img(tmp_path / "train" / "a.png")
    (tmp_path / "trainannot").mkdir()
    with pytest.raises(DatasetLayoutError, match="a.png"):
        _build("camvid", tmp_path)


def _voc(root, aug=False):
    ids = ["2007_000001", "2007_000002"]
    for i, n in enumerate(ids):
        _img(root / "JPEGImages" / f"{n}.jpg", seed=i)
        _lab(root / "SegmentationClass" / f"{n}.png", [0, 15, 255])
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text(ids[0] + "\n")
    (sets / "val.txt").write_text(ids[1] + "\n")
    if aug:
        (sets / "trainaug.txt").write_text("\n".join(ids) + "\n")
        for n in ids:
            _lab(root / "SegmentationClassAug" / f"{n}.png", [0, 20])


def test_voc_reads_lists_and_prefers_trainaug(tmp_path):
    _voc(tmp_path)
    assert len(_build("voc", tmp_path, "train")) == 1
    _, y = _build("voc", tmp_path, "val")[0]
    assert set(torch.unique(y).tolist()) == {0, 15, 255}
    aug = tmp_path / "aug"
    _voc(aug, aug=True)
    ds = _build("voc", aug, "train")
    assert len(ds) == 2
    assert set(torch.unique(ds[0][1]).tolist()) == {0, 20}
    assert DATASETS.get("voc").variable_size


def test_voc_list_naming_a_missing_image_fails_clearly(tmp_path):
    _voc(tmp_path)
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("ghost\n")
    with pytest.raises(DatasetLayoutError, match="ghost"):
        _build("voc", tmp_path, "val")


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    for split in ("train", "val"):
        _img(tmp_path / "leftImg8bit" / split / "aachen" / "aachen_0_0_leftImg8bit.png")
        _lab(tmp_path / "gtFine" / split / "aachen" / "aachen_0_0_gtFine_labelIds.png",
             [7, 26, 0, 33])
    ds = _build("cityscapes", tmp_path, "val")
    _, y = ds[0]
    assert set(torch.unique(y).tolist()) == {0, 13, 18, 255}
    assert len(_build("cityscapes", tmp_path, "test")) == 1  # test -> val


def test_cityscapes_missing_tree(tmp_path):
    with pytest.raises(DatasetLayoutError, match="leftImg8bit"):
        _build("cityscapes", tmp_path)
