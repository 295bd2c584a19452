"""The embedded default dataset: procedurally generated scenes, no download.

Designed so that compression damage shows. Eight object classes are the product of four
shapes and two surface textures, so a model must use both shape and texture to name a
pixel. Each class also has its own hue band, overlapping its neighbours' bands at the
edges, so colour is a strong but ambiguous cue: it is what a small model learns first, and
shape and texture are what separates the neighbours (v1 had almost no colour cue and 11 %
object pixels; ENet, the CPU default, could not learn it in a CPU budget and predicted
background everywhere; v2's bands overlapped by 60 % and left both CPU models just under
the calibration target of mIoU 0.55 at the quick budget; v3's overlap by 20 %). Objects
vary in scale (radius 5-20 px), occlude each other, and cover about a third of the image,
on a background of low-saturation low-frequency noise with untextured clutter blobs and
lines; an illumination gradient and sensor noise finish the image. Every image is a pure
function of (split, index) and the generator version, and the splits are cached on disk
as uint8 arrays under that version key.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.atomic import atomic_write
from bench.data.base import DatasetInfo, SegDataset, register_dataset
from bench.data.transforms import eval_resize, sample_generator, to_tensors, train_augment

VERSION = "v3"
SIZE = 128  # native image size (square)
SPLIT_SIZES = {"train": 1200, "val": 240, "test": 240}
_SPLIT_SEED = {"train": 11, "val": 23, "test": 37}
SHAPES = ("disk", "square", "triangle", "cross")
TEXTURES = ("stripes", "checker")
CLASS_NAMES = ("background",) + tuple(f"{t}_{s}" for t in TEXTURES for s in SHAPES)
NUM_CLASSES = len(CLASS_NAMES)  # 9

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)


def _shape_mask(rng: np.random.Generator, shape: str, cy: float, cx: float, r: float):
    ang = rng.uniform(0, np.pi)
    c, s = np.cos(ang), np.sin(ang)
    dy, dx = _YY - cy, _XX - cx
    u, v = c * dx + s * dy, -s * dx + c * dy  # rotated coordinates
    if shape == "disk":
        return dy * dy + dx * dx <= r * r
    if shape == "square":
        h = r * 0.85
        return (np.abs(u) <= h) & (np.abs(v) <= h)
    if shape == "triangle":
        # equilateral triangle with circumradius 1.4 r (inradius 0.7 r): inside three
        # half-planes; the factor gives it about the area of the other shapes
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            a = ang + k * 2 * np.pi / 3
            inside &= (np.cos(a) * dx + np.sin(a) * dy) <= r * 0.7
        return inside
    if shape == "cross":
        arm = r * 0.4
        return ((np.abs(u) <= r) & (np.abs(v) <= arm)) | ((np.abs(v) <= r) & (np.abs(u) <= arm))
    raise ValueError(shape)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _texture(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A two-tone pattern in [0, 1] over the whole image; the object mask cuts it out."""
    period = rng.uniform(6.0, 11.0)
    ang = rng.uniform(0, np.pi)
    u = np.cos(ang) * _XX + np.sin(ang) * _YY
    v = -np.sin(ang) * _XX + np.cos(ang) * _YY
    if kind == "stripes":
        return (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    return ((np.floor(u / period * 1.4) + np.floor(v / period * 1.4)) % 2).astype(np.float32)


def _object_colours(rng: np.random.Generator, cls: int) -> tuple[np.ndarray, np.ndarray]:
    """Each class has its own hue band, overlapping its neighbours' (hue alone is a strong
    but ambiguous cue); the dark tone of the pattern is a nearby hue."""
    hue = (cls - 1) / (NUM_CLASSES - 1) + rng.uniform(-0.07, 0.07)
    a = _hsv_to_rgb(hue % 1.0, rng.uniform(0.6, 1.0), rng.uniform(0.65, 1.0))
    hue_b = (hue + rng.uniform(-0.05, 0.05)) % 1.0
    b = _hsv_to_rgb(hue_b, rng.uniform(0.4, 1.0), rng.uniform(0.1, 0.4))
    return a, b


def _background(rng: np.random.Generator) -> np.ndarray:
    # low-saturation coloured noise: objects are saturated, the background mostly is not
    grey = rng.uniform(0.2, 0.7, size=(1, 5, 5))
    coarse = (grey + 0.35 * rng.uniform(-0.3, 0.3, size=(3, 5, 5))).astype(np.float32)
    t = torch.nn.functional.interpolate(
        torch.from_numpy(coarse)[None], size=(SIZE, SIZE), mode="bicubic", align_corners=False
    )[0]
    img = t.permute(1, 2, 0).numpy().clip(0, 1)
    # untextured clutter: blobs and lines in random colours (not objects)
    for _ in range(rng.integers(3, 9)):
        col = rng.uniform(0.1, 0.9, size=3)
        if rng.uniform() < 0.5:
            cy, cx = rng.uniform(0, SIZE, size=2)
            ry, rx = rng.uniform(2, 12, size=2)
            m = ((_YY - cy) / ry) ** 2 + ((_XX - cx) / rx) ** 2 <= 1
        else:
            y0, x0, y1, x1 = rng.uniform(0, SIZE, size=4)
            d = np.abs((y1 - y0) * _XX - (x1 - x0) * _YY + x1 * y0 - y1 * x0)
            d /= np.hypot(y1 - y0, x1 - x0) + 1e-6
            m = d <= rng.uniform(0.5, 1.8)
        img[m] = 0.6 * col + 0.4 * img[m]
    return img


def generate_scene(split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 HxWx3) and its label map (uint8 HxW), deterministic in (split, index)."""
    rng = np.random.default_rng([_SPLIT_SEED[split], index, 7919])
    img = _background(rng)
    label = np.zeros((SIZE, SIZE), dtype=np.uint8)
    for _ in range(rng.integers(14, 27)):
        shape_i = int(rng.integers(len(SHAPES)))
        tex_i = int(rng.integers(len(TEXTURES)))
        # log-uniform radius: many small objects, some large
        r = float(np.exp(rng.uniform(np.log(5.0), np.log(20.0))))
        cy, cx = rng.uniform(0.0, SIZE, size=2)
        mask = _shape_mask(rng, SHAPES[shape_i], cy, cx, r)
        if not mask.any():
            continue
        cls = 1 + tex_i * len(SHAPES) + shape_i
        a, b = _object_colours(rng, cls)
        pat = _texture(rng, TEXTURES[tex_i])[..., None]
        obj = pat * a + (1 - pat) * b
        img[mask] = obj[mask]
        label[mask] = cls
    # illumination: a random linear gradient of gain, then sensor noise
    gy, gx = rng.uniform(-0.4, 0.4, size=2)
    gain = 1.0 + gy * (_YY / SIZE - 0.5) + gx * (_XX / SIZE - 0.5)
    gain *= rng.uniform(0.75, 1.2)
    img = img * gain[..., None] + rng.normal(0, 0.04, size=img.shape)
    return (img.clip(0, 1) * 255 + 0.5).astype(np.uint8), label


def cache_dir() -> Path:
    root = os.environ.get("SEGBENCH_DATA_CACHE") or Path.home() / ".cache" / "segbench"
    return Path(root) / f"synthetic-{VERSION}"


def _generator_digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def load_split(split: str, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first `n` images of a split (all by default) as (N,H,W,3) and (N,H,W) uint8
    arrays, generated once and cached; a smaller cached prefix is extended, not redone."""
    n = SPLIT_SIZES[split] if n is None else min(n, SPLIT_SIZES[split])
    path = cache_dir() / f"{split}-{_generator_digest()}.npz"
    images = np.empty((0, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.empty((0, SIZE, SIZE), dtype=np.uint8)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                images, labels = z["images"], z["labels"]
        except (OSError, ValueError, KeyError, EOFError):
            pass  # a corrupt cache is regenerated below
    if len(images) >= n:
        return images[:n], labels[:n]
    have = len(images)
    new_i = np.empty((n - have, SIZE, SIZE, 3), dtype=np.uint8)
    new_l = np.empty((n - have, SIZE, SIZE), dtype=np.uint8)
    for k in tqdm(range(n - have), desc=f"generating synthetic {split}", unit="img",
                  disable=n - have < 100, leave=False):
        new_i[k], new_l[k] = generate_scene(split, have + k)
    images, labels = np.concatenate([images, new_i]), np.concatenate([labels, new_l])
    atomic_write(path, lambda f: np.savez(f, images=images, labels=labels))
    return images, labels


class SyntheticScenes(SegDataset):
    def __init__(self, split: str, train: bool, crop: int, seed: int, limit: int | None = None,
                 scale_range: tuple[float, float] = (0.5, 2.0)):
        self.images, self.labels = load_split(split, limit)
        self.n = len(self.images)
        self.scale_range = scale_range
        self.train, self.crop, self.seed, self.epoch = train, crop, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def class_pixel_counts(self) -> np.ndarray:
        return np.bincount(self.labels[self.labels != 255].ravel(), minlength=NUM_CLASSES)

    def __getitem__(self, i: int):
        img, lab = to_tensors(self.images[i], self.labels[i])
        if self.train:
            gen = sample_generator(self.seed, self.epoch, i)
            return train_augment(img, lab, self.crop, 255, gen, self.scale_range)
        return eval_resize(img, lab, None)


def _build(split: str, root, budget, seed: int, train: bool) -> SegDataset:
    limit = budget.train_images if split == "train" else budget.eval_images
    return SyntheticScenes(split, train=train, crop=budget.crop_size, seed=seed, limit=limit,
                           scale_range=budget.scale_range)


register_dataset(
    DatasetInfo(
        name="synthetic",
        num_classes=NUM_CLASSES,
        ignore_index=255,
        class_names=CLASS_NAMES,
        needs_root=False,
        builder=_build,
        version=VERSION,
    )
)
