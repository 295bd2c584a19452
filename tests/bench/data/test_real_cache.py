"""The real-data split cache and the one-time check of every image/label pair."""

import numpy as np
import pytest
import torch

from bench.budgets import get_budget
from bench.data import DATASETS, DatasetLayoutError
from bench.data import cache as cache_mod

BUDGET = get_budget("smoke", {"crop_size": 16})


def _build(root, split="train", train=False, budget=BUDGET):
    return DATASETS.get("camvid").builder(split, root, budget, 0, train)


def test_second_build_reads_the_cache_not_the_files(trees, tmp_path, monkeypatch):
    root = trees.camvid(tmp_path / "cv")
    first = _build(root, "val")
    x0, y0 = first[1]
    assert first.meta["cached"]

    def no_decoding(*a, **k):
        raise AssertionError("decoded a file although the split is cached")

    monkeypatch.setattr(cache_mod, "decode_pair", no_decoding)
    again = _build(root, "val")
    x1, y1 = again[1]
    assert torch.equal(x0, x1) and torch.equal(y0, y1)


def test_an_edited_file_invalidates_the_cache(trees, tmp_path):
    root = trees.camvid(tmp_path / "cv")
    before = _build(root, "val")
    trees.label(root / "valannot" / "f0.png", [5])
    after = _build(root, "val")
    assert after.meta["key"] != before.meta["key"]
    assert set(torch.unique(after[0][1]).tolist()) == {5}


def test_work_size_resizes_once_and_eval_size_is_the_evaluated_size(trees, tmp_path):
    root = trees.camvid(tmp_path / "cv", h=24, w=32)
    b = get_budget("smoke", {"work_size": 12, "eval_size": 12, "crop_size": 8})
    ds = _build(root, "val", budget=b)
    x, y = ds[0]
    assert x.shape == (3, 12, 16) and y.shape == (12, 16)
    assert ds.arrays[0][0].shape == (12, 16, 3)  # cached at the working size
    xt, _ = _build(root, "train", train=True, budget=b)[0]
    assert xt.shape == (3, 8, 8)
    native = _build(root, "val", budget=get_budget("smoke", {"eval_size": None}))
    assert native[0][0].shape == (3, 24, 32)


def test_class_pixel_counts_are_at_the_working_resolution(trees, tmp_path):
    # the top three quarters sky, the rest void: a quarter of the pixels at half size
    root = trees.camvid(tmp_path / "cv", h=24, w=32, values=[0] * 18 * 32 + [11] * 6 * 32)
    full = _build(root, "train").class_pixel_counts()
    half = _build(root, "train", budget=get_budget("smoke", {"work_size": 12}))
    assert full.shape == (11,) and full[0] == 2 * 24 * 32 * 3 // 4 and full[1:].sum() == 0
    assert half.class_pixel_counts()[0] == full[0] // 4


def test_sixteen_bit_label_out_of_range_names_the_file(trees, tmp_path):
    root = trees.camvid(tmp_path / "cv")
    trees.label(root / "trainannot" / "f1.png", [0, 300], dtype=np.uint16)
    with pytest.raises(DatasetLayoutError, match=r"f1\.png.*300"):
        _build(root)


def test_values_neither_class_nor_void_warn_once_with_their_count(trees, tmp_path, capsys):
    root = trees.camvid(tmp_path / "cv", values=[0, 3, 11, 40])
    _build(root)
    _build(root)
    err = capsys.readouterr().err
    assert err.count("warning: camvid:") == 1
    assert f"{2 * 12 * 20 // 4} label pixels" in err


def test_size_mismatch_names_both_files(trees, tmp_path):
    root = trees.camvid(tmp_path / "cv")
    trees.label(root / "trainannot" / "f0.png", [1], h=6, w=20)
    with pytest.raises(DatasetLayoutError, match=r"trainannot/f0\.png.*train/f0\.png"):
        _build(root)


def test_split_over_the_cache_limit_decodes_per_item(trees, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGBENCH_CACHE_MAX_MB", "0")
    root = trees.camvid(tmp_path / "cv")
    ds = _build(root, "val")
    assert ds.arrays is None and not ds.meta["cached"]
    assert ds[1][0].shape == (3, 12, 20)
    assert _build(root, "val").class_pixel_counts().sum() > 0  # the index is still cached


def test_a_truncated_png_is_named_when_the_split_is_indexed(trees, tmp_path):
    """Every pair is decoded once when the split is first indexed, so a damaged file fails
    there, by name, not in the middle of a run that happens to reach it."""
    root = trees.camvid(tmp_path / "cv", n=3)
    bad = root / "train" / "f2.png"
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    with pytest.raises(DatasetLayoutError, match=r"cannot read .*train/f2\.png"):
        _build(root)


def test_images_of_different_sizes_are_found_and_evaluated_one_at_a_time(trees, tmp_path):
    from bench.runner import run_one

    root = trees.camvid(tmp_path / "cv", h=32, w=48)
    trees.image(root / "val" / "f1.png", h=32, w=40)
    trees.label(root / "valannot" / "f1.png", list(range(12)), h=32, w=40)
    assert _build(root, "val").meta["mixed_sizes"][3] == [32, 40]
    assert _build(root, "train").uniform_size
    rec = run_one(trees.spec(), results=tmp_path / "results", device=torch.device("cpu"),
                  data_root=root)
    assert rec["status"] == "ok", rec.get("error")  # was: "stack expects each tensor ..."
