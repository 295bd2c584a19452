"""Decoded real-dataset splits, checked once and cached on disk as uint8 arrays.

Decoding a 360x480 PNG pair and rescaling the whole frame cost about a third of each
ENet step on CamVid, and a label file with a value the lookup table cannot hold failed
deep inside training as a bare IndexError. So the first time a split is indexed every
image/label pair is read once: sizes must match, labels must be single-channel with
values < 256, and values the dataset does not define (neither a class nor void) are
counted and warned about once. The pairs are resized to the budget's working resolution,
mapped to training ids and, when they fit under SEGBENCH_CACHE_MAX_MB (default 2048),
saved as one .npz (allow_pickle=False) beside the synthetic cache; the check's result and
the per-class pixel counts (what class weighting needs) go to a JSON next to it. Both are
keyed by the file list, every file's size and mtime, the lookup table and the resolution,
so an edited tree is re-read rather than served stale.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bench.atomic import atomic_write, atomic_write_text
from bench.data.base import DatasetLayoutError

_WARNED: set[str] = set()


def cache_root() -> Path:
    root = os.environ.get("SEGBENCH_DATA_CACHE") or Path.home() / ".cache" / "segbench"
    return Path(root) / "real"


def cache_limit_bytes() -> int:
    return int(float(os.environ.get("SEGBENCH_CACHE_MAX_MB", "2048")) * 2**20)


def tree_key(pairs: list[tuple[Path, Path]], lut: np.ndarray, known: np.ndarray,
             work_size: int | None) -> str:
    """What the decoded arrays depend on: files (path, size, mtime), mapping, resolution."""
    h = hashlib.sha256()
    for img, lab in pairs:
        for p in (img, lab):
            st = p.stat()
            h.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    h.update(lut.tobytes())
    h.update(known.tobytes())
    h.update(f"work={work_size}".encode())
    return h.hexdigest()[:16]


def scaled_size(h: int, w: int, short_side: int | None) -> tuple[int, int]:
    if short_side is None:
        return h, w
    r = short_side / min(h, w)
    return int(math.floor(h * r + 0.5)), int(math.floor(w * r + 0.5))


def decode_pair(img_path: Path, lab_path: Path, lut: np.ndarray, work_size: int | None,
                name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image uint8 HxWx3, training ids uint8 HxW, raw label) at the working resolution;
    a pair that cannot be used raises DatasetLayoutError naming the file."""
    try:
        im = Image.open(img_path).convert("RGB")
        lab = Image.open(lab_path)
        lab.load()
    except OSError as e:
        raise DatasetLayoutError(f"{name}: cannot read {img_path} / {lab_path}: {e}") from e
    if lab.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L") or lab.size != im.size:
        raise DatasetLayoutError(
            f"{name}: label {lab_path} is {lab.mode} {lab.size[1]}x{lab.size[0]}, image "
            f"{img_path} is {im.size[1]}x{im.size[0]}; labels must be single-channel maps "
            f"of the image's size"
        )
    h, w = scaled_size(im.size[1], im.size[0], work_size)
    if (h, w) != (im.size[1], im.size[0]):
        im = im.resize((w, h), Image.BILINEAR)
        lab = lab.resize((w, h), Image.NEAREST)
    raw = np.array(lab)
    if raw.size and int(raw.max()) >= len(lut):
        raise DatasetLayoutError(
            f"{name}: label {lab_path} holds value {int(raw.max())}; label values must be "
            f"< {len(lut)} (8-bit class ids, void included)"
        )
    return np.array(im), lut[raw], raw


def scan(pairs: list[tuple[Path, Path]], lut: np.ndarray, known: np.ndarray, ignore: int,
         num_classes: int, work_size: int | None, name: str) -> tuple[dict, list | None]:
    """Check and decode every pair once. Returns (index facts, arrays or None): arrays
    (image, label) per pair when the split fits the cache limit, else None."""
    root = cache_root()
    key = tree_key(pairs, lut, known, work_size)
    meta_path = root / f"{name}-{key}.json"
    arr_path = root / f"{name}-{key}.npz"
    meta = None
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = None
    if meta is not None and not meta.get("cached"):
        _warn_unknown(meta, name)
        return meta, None
    if meta is not None and arr_path.is_file():
        try:
            with np.load(arr_path, allow_pickle=False) as z:
                arrays = [(z[f"i{k}"], z[f"l{k}"]) for k in range(len(pairs))]
            _warn_unknown(meta, name)
            return meta, arrays
        except (OSError, ValueError, KeyError, EOFError):
            pass  # a corrupt cache is rebuilt below
    counts = np.zeros(num_classes, dtype=np.int64)
    unknown, arrays, nbytes, limit = 0, [], 0, cache_limit_bytes()
    first, mixed = None, None  # the first two images of different sizes, if any
    for img_path, lab_path in pairs:
        image, lab, raw = decode_pair(img_path, lab_path, lut, work_size, name)
        if first is None:
            first = (str(img_path), list(image.shape[:2]))
        elif mixed is None and list(image.shape[:2]) != first[1]:
            mixed = [*first, str(img_path), list(image.shape[:2])]
        unknown += int((~known[raw]).sum())
        counts += np.bincount(lab[lab != ignore].ravel(), minlength=num_classes)[:num_classes]
        nbytes += image.nbytes + lab.nbytes
        if arrays is not None:
            arrays.append((image, lab))
            if nbytes > limit:
                arrays = None  # too big to hold: decode per item instead
    meta = {"key": key, "images": len(pairs), "work_size": work_size,
            "class_pixel_counts": counts.tolist(), "unknown_label_pixels": unknown,
            "cached": arrays is not None, "mixed_sizes": mixed}
    if arrays is not None:
        flat = {f"{t}{k}": a for k, (i, lab) in enumerate(arrays) for t, a in
                (("i", i), ("l", lab))}
        atomic_write(arr_path, lambda f: np.savez(f, **flat))
    atomic_write_text(meta_path, json.dumps(meta, indent=1))
    _warn_unknown(meta, name)
    return meta, arrays


def _warn_unknown(meta: dict, name: str) -> None:
    n = meta.get("unknown_label_pixels", 0)
    if n and meta["key"] not in _WARNED:
        _WARNED.add(meta["key"])
        print(f"warning: {name}: {n} label pixels hold values that are neither a class nor "
              f"void; they are ignored", file=sys.stderr)
