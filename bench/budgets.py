"""Named compute budgets. A budget is part of every run's identity and is shown on the
leaderboard, because a method's ranking can change with how long it was allowed to train.

`smoke` exists for tests and CI (seconds a run), `quick` is the 2-core CPU default (a
baseline in a few minutes), `full` follows the reference reports (GPU).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from bench.config import check_types
from bench.registry import Registry, UnknownNameError


@dataclass(frozen=True)
class Budget:
    name: str
    epochs: int  # baseline training epochs
    finetune_epochs: int  # epochs a method fine-tunes for after compressing
    batch_size: int
    lr: float  # base learning rate of the default optimizer, Adam (SGD: x sgd_lr_scale)
    finetune_lr_scale: float  # fine-tuning starts at lr * this
    crop_size: int  # training crop (square)
    eval_size: int | None  # evaluation size (short side) for real datasets; None = native
    train_images: int | None  # cap on training images (None = the whole split)
    eval_images: int | None  # cap on validation/test images
    latency_runs: int  # timed forward passes (median and IQR over these)
    latency_warmup: int
    calibration_images: int  # for post-training quantization

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


BUDGETS: Registry[Budget] = Registry("budget")
for _b in (
    Budget("smoke", epochs=1, finetune_epochs=1, batch_size=8, lr=2e-3, finetune_lr_scale=0.2,
           crop_size=64, eval_size=None, train_images=32, eval_images=16, latency_runs=30,
           latency_warmup=3, calibration_images=16),
    Budget("quick", epochs=16, finetune_epochs=3, batch_size=16, lr=2e-3, finetune_lr_scale=0.2,
           crop_size=96, eval_size=None, train_images=None, eval_images=None, latency_runs=50,
           latency_warmup=10, calibration_images=128),
    Budget("full", epochs=60, finetune_epochs=20, batch_size=16, lr=5e-4, finetune_lr_scale=0.1,
           crop_size=256, eval_size=513, train_images=None, eval_images=None, latency_runs=100,
           latency_warmup=20, calibration_images=512),
):
    BUDGETS.add(_b.name, _b)


def get_budget(name: str, overrides: dict[str, Any] | None = None) -> Budget:
    budget = BUDGETS.get(name)
    if overrides:
        valid = {f.name for f in fields(Budget)} - {"name"}
        bad = sorted(set(overrides) - valid)
        if bad:
            raise UnknownNameError(
                f"unknown budget field(s) {', '.join(bad)}; valid: {', '.join(sorted(valid))}"
            )
        check_types(Budget, overrides, "budget.")
        budget = replace(budget, **overrides)
    return budget
