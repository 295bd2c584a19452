"""The typed, fully resolved description of one run, and its id.

A run id is a hash of everything that determines the result (model and its kwargs,
method stages with their configs and plugin versions, dataset, resolved budget, training
config, seed, package version) and of nothing else: not the device, not the thread count,
not the git revision (all recorded in `env`), so an unrelated commit does not invalidate
finished runs. Device and thread count do change the figures in the last digits, so the
leaderboard never averages runs measured in different settings (docs/reliability.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

from bench import __version__
from bench.budgets import Budget
from bench.config import NEW_FIELD, identity_fields, setting, validate
from bench.registry import UnknownNameError

CLASS_WEIGHTS = ("enet", "none")


@dataclass
class TrainConfig:
    """The shared training loop's settings (`--set train.<field>=...`), each field's type
    and range declared here and checked on creation (a ConfigError naming `train.<field>`)."""

    optimizer: str = setting("adam", choices=("adam", "sgd"))
    momentum: float = setting(0.9, ge=0.0, lt=1.0)  # SGD only
    weight_decay: float = setting(1e-4, ge=0.0)
    sgd_lr_scale: float = setting(50.0, gt=0.0)  # SGD's lr = the budget's (Adam) lr * this
    loss: str = setting("ce", choices=("ce", "iou", "ce+iou"))
    poly_power: float = setting(0.9, ge=0.0)
    amp: bool = True  # fp16 mixed precision, on CUDA only, when precision is fp32
    # forward-pass number format and layout (bench/precision.py); added after runs were
    # recorded, so left out of the run id at their defaults (`identity`)
    precision: str = setting("fp32", choices=("fp32", "bf16"), new=True)
    channels_last: bool = setting(False, new=True)
    # per-class cross-entropy weights: none, or enet (w_c = 1 / ln(1.02 + p_c), Paszke et
    # al. 2016, p_c from the training labels at the training resolution)
    class_weights: str = setting("none", choices=CLASS_WEIGHTS, new=True)

    def __post_init__(self) -> None:
        validate(self, "train.")

    def identity(self) -> dict[str, Any]:
        """The settings as hashed into run ids (`identity_fields`)."""
        return identity_fields(self)


EVAL_SPLITS = ("val", "test")


@dataclass
class RunSpec:
    model: str
    method: str  # pipeline spec, e.g. "prune_unstructured+kmeans"
    label: str  # the name shown on the leaderboard (a preset name or the spec)
    stages: list[dict[str, Any]]  # [{"method", "version", "config"}]
    dataset: str
    budget: Budget
    seed: int
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    # the split the run is scored on: val (default, left out of the identity) or test
    eval_split: str = field(default="val", metadata=NEW_FIELD)
    # deployment runtimes every row is also timed in (bench/runtimes); empty: each row in
    # its own runtime only, as before this setting existed (left out of the identity)
    runtimes: list[str] = field(default_factory=list, metadata=NEW_FIELD)

    def identity(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_kwargs": self.model_kwargs,
            "method": self.method,
            "stages": self.stages,
            "dataset": self.dataset,
            "dataset_version": dataset_version(self.dataset),
            "budget": self.budget.to_dict(),
            "seed": self.seed,
            "train": self.train.identity(),
            "code_version": __version__,
        } | identity_fields(self, names=("eval_split", "runtimes"))

    @property
    def run_id(self) -> str:
        return stable_hash(self.identity())

    def baseline_spec(self) -> RunSpec:
        return RunSpec(self.model, "none", "none", [{"method": "none", "version": 1, "config": {}}],
                       self.dataset, self.budget, self.seed, dict(self.model_kwargs), self.train,
                       self.eval_split, list(self.runtimes))

    def weights_spec(self) -> RunSpec:
        """The baseline spec that names its trained weights: the split a run is scored on
        and the runtimes it is also timed in change no weight, so they are left at their
        defaults, and every such run shares one cache entry (`weights_spec().run_id`)."""
        spec = self.baseline_spec()
        spec.eval_split, spec.runtimes = "val", []
        return spec

    @property
    def is_baseline(self) -> bool:
        return self.method == "none"

    def to_dict(self) -> dict[str, Any]:
        d = self.identity()
        d["label"] = self.label
        return d


def dataset_version(name: str) -> str:
    from bench.data import DATASETS  # imported late: bench.data pulls in torch datasets

    return DATASETS.get(name).version if name in DATASETS else "unregistered"


def stale_reason(config: dict[str, Any]) -> str | None:
    """Why a run config no longer describes the current data, or None. A config written
    before datasets carried a version counts as version "1"."""
    dataset = config.get("dataset")
    now = dataset_version(dataset) if dataset is not None else "unregistered"
    have = config.get("dataset_version", "1")
    if now == "unregistered" or have == now:
        return None
    return f"computed on dataset {dataset} version {have}; the current version is {now}"


def stable_hash(obj: Any, n: int = 16) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


def spec_from_dict(d: dict[str, Any]) -> RunSpec:
    """Rebuild a RunSpec from a record's `config` (what `to_dict` wrote). A record from
    an older segbench whose config has fields this version does not know cannot be
    repeated exactly, so it is refused by name rather than silently reinterpreted."""
    for key, cls in (("budget", Budget), ("train", TrainConfig)):
        unknown = sorted(set(d.get(key, {})) - {f.name for f in fields(cls)})
        if unknown:
            raise UnknownNameError(
                f"this record's {key} config has field(s) {', '.join(unknown)} that this "
                f"segbench version does not know (valid: "
                f"{', '.join(sorted(f.name for f in fields(cls)))}); it was written by "
                f"another version: re-run it"
            )
    reason = stale_reason(d)
    if reason:
        raise UnknownNameError(f"this record was {reason}: its figures do not describe the "
                               f"current data; re-run it")
    return RunSpec(
        model=d["model"], method=d["method"], label=d.get("label", d["method"]),
        stages=d["stages"], dataset=d["dataset"], budget=Budget(**d["budget"]), seed=d["seed"],
        model_kwargs=d.get("model_kwargs", {}), train=TrainConfig(**d.get("train", {})),
        eval_split=d.get("eval_split", "val"), runtimes=list(d.get("runtimes", [])),
    )
