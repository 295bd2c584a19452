"""Named compute budgets. A budget is part of every run's identity and is shown on the
leaderboard, because a method's ranking can change with how long it was allowed to train.

`smoke` exists for tests and CI (seconds a run), `quick` is the 2-core CPU default (a
baseline in a few minutes on the synthetic set), `full` follows the reference reports (GPU).

A budget may depend on the dataset: the synthetic values were tuned for 128x128 scenes,
and on a real 360x480 CamVid frame a 96-pixel crop for 16 epochs sees too little to learn
the small classes (18 % mIoU). `DATASET_BUDGETS` holds, per (dataset, budget), the fields
that differ, e.g. a working resolution the images are resized to before augmentation and
evaluation. They are applied when the budget is resolved, so they are in the resolved
`Budget` that the run id hashes, in every record and on the leaderboard.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from bench.config import identity_fields, setting, validate
from bench.registry import Registry, UnknownNameError


@dataclass(frozen=True)
class Budget:
    """How much compute a run gets. Every field's type and range is declared here and
    checked on creation (`--set budget.<field>=...` included): a bad value is a
    ConfigError naming `budget.<field>` and what it admits."""

    name: str
    epochs: int = setting(ge=1)  # baseline training epochs
    finetune_epochs: int = setting(ge=0)  # epochs a method fine-tunes for after compressing
    batch_size: int = setting(ge=1)
    # base learning rate of the default optimizer, Adam (SGD: x sgd_lr_scale)
    lr: float = setting(gt=0)
    finetune_lr_scale: float = setting(gt=0)  # fine-tuning starts at lr * this
    crop_size: int = setting(ge=8)  # training crop (square)
    # evaluation size (short side) for real datasets; None = native
    eval_size: int | None = setting(ge=8)
    train_images: int | None = setting(ge=1)  # cap on training images (None = the whole split)
    eval_images: int | None = setting(ge=1)  # cap on validation/test images
    latency_runs: int = setting(ge=1)  # timed forward passes (median and IQR over these)
    latency_warmup: int = setting(ge=0)
    calibration_images: int = setting(ge=1)  # for post-training quantization
    # -- added for real data; None = the behaviour before they existed, left out of the
    # run id at that default (bench.config.identity_fields)
    work_size: int | None = setting(None, ge=8, new=True)  # short side images are resized to
    # random training scale range (None: 0.5 .. 2.0)
    scale_min: float | None = setting(None, gt=0, new=True)
    scale_max: float | None = setting(None, gt=0, new=True)

    def __post_init__(self) -> None:
        validate(self, "budget.")

    def to_dict(self) -> dict[str, Any]:
        return identity_fields(self)

    @property
    def scale_range(self) -> tuple[float, float]:
        return (0.5 if self.scale_min is None else self.scale_min,
                2.0 if self.scale_max is None else self.scale_max)


BUDGETS: Registry[Budget] = Registry("budget")
for _b in (
    Budget("smoke", epochs=1, finetune_epochs=1, batch_size=8, lr=2e-3, finetune_lr_scale=0.2,
           crop_size=64, eval_size=None, train_images=32, eval_images=16, latency_runs=30,
           latency_warmup=3, calibration_images=16),
    Budget("quick", epochs=16, finetune_epochs=3, batch_size=16, lr=2e-3, finetune_lr_scale=0.2,
           crop_size=96, eval_size=None, train_images=None, eval_images=None, latency_runs=50,
           latency_warmup=10, calibration_images=128),
    Budget("full", epochs=60, finetune_epochs=20, batch_size=16, lr=5e-4, finetune_lr_scale=0.1,
           crop_size=256, eval_size=None, train_images=None, eval_images=None, latency_runs=100,
           latency_warmup=20, calibration_images=512),
):
    BUDGETS.add(_b.name, _b)

# (dataset, budget) -> fields that differ from the named budget. Only CamVid was
# calibrated (on val; docs/real-data.md has the measurements); the Cityscapes rows scale
# CamVid's choice to its 1024x2048 frames and are not measured.
DATASET_BUDGETS: dict[tuple[str, str], dict[str, Any]] = {
    # half resolution (180x240), as the real-time papers train on 2 cores' worth of data
    ("camvid", "quick"): dict(work_size=180, eval_size=180, crop_size=128, scale_min=0.75,
                              scale_max=1.5, batch_size=8, lr=5e-3, epochs=60,
                              finetune_epochs=8, calibration_images=64),
    # native 360x480, evaluated there (the paper protocol), recorded as such
    ("camvid", "full"): dict(eval_size=360),
    # the DeepLab protocol's 513 for VOC; synthetic scenes are evaluated at their native
    # 128x128 at every budget, and their records say so (they used to claim 513)
    ("voc", "full"): dict(eval_size=513),
    ("cityscapes", "quick"): dict(work_size=256, eval_size=256, crop_size=256, scale_min=0.75,
                                  scale_max=1.5, batch_size=8, lr=5e-3),
    ("cityscapes", "full"): dict(eval_size=1024),
}
# training-loop defaults per dataset (`--set train.*` still wins); see docs/real-data.md
DATASET_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "camvid": {"class_weights": "enet", "loss": "ce+iou"},
    "cityscapes": {"class_weights": "enet", "loss": "ce+iou"},
}


def get_budget(name: str, overrides: dict[str, Any] | None = None,
               dataset: str | None = None) -> Budget:
    """The named budget, adjusted for `dataset` (see DATASET_BUDGETS), then `overrides`."""
    budget = BUDGETS.get(name)
    if dataset is not None:
        budget = replace(budget, **DATASET_BUDGETS.get((dataset, name), {}))
    if overrides:
        valid = {f.name for f in fields(Budget)} - {"name"}
        bad = sorted(set(overrides) - valid)
        if bad:
            raise UnknownNameError(
                f"unknown budget field(s) {', '.join(bad)}; valid: {', '.join(sorted(valid))}"
            )
        budget = replace(budget, **overrides)  # checked on creation
    return budget


def train_defaults(dataset: str) -> dict[str, Any]:
    """The training-loop settings a dataset uses unless `--set train.*` says otherwise."""
    return dict(DATASET_TRAIN_DEFAULTS.get(dataset, {}))
