"""What a method sees of the harness while it runs: data, the shared training loop,
evaluation, and trained baselines (its own, or another zoo model's for a teacher).

Methods get these through the context instead of building their own, so that a
distillation teacher, a calibration set or a fine-tuning run is the same everywhere.
"""

from __future__ import annotations

import copy
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from bench.baseline import get_or_train
from bench.data import DATASETS, DatasetInfo
from bench.evaluate import evaluate
from bench.facts import FactLog
from bench.spec import RunSpec
from bench.train import make_loader, train


class RunContext(FactLog):
    """One run's view of the harness; `report(fact)` (from FactLog) feeds its record."""

    def __init__(self, spec: RunSpec, *, device: torch.device, results: Path,
                 data_root: Path | None = None):
        super().__init__()
        self.spec = spec
        self.budget = spec.budget
        self.seed = spec.seed
        self.device = device
        self.results = Path(results)
        self.data_root = Path(data_root) if data_root else None
        self.info: DatasetInfo = DATASETS.get(spec.dataset)
        self.timings: dict[str, float] = {}
        self._datasets: dict[tuple[str, bool], Any] = {}
        self._baselines: dict[str, tuple[nn.Module, dict]] = {}
        # training cost of every baseline this run used (its own and any teacher's), and
        # the wall time spent obtaining them, so the run's own compute can be told apart
        self.baseline_costs: dict[str, float] = {}
        self.baseline_wall_s = 0.0

    # -- data --------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def ignore_index(self) -> int:
        return self.info.ignore_index

    def dataset(self, split: str, train: bool = False):
        key = (split, train)
        if key not in self._datasets:
            if self.info.needs_root and self.data_root is None:
                raise FileNotFoundError(
                    f"dataset {self.info.name!r} reads files from disk: pass --data-root DIR "
                    f"with this layout:\n{self.info.layout}"
                )
            self._datasets[key] = self.info.builder(split, self.data_root, self.budget,
                                                    self.seed, train)
        return self._datasets[key]

    def eval_batches(self, split: str | None = None):
        split = split or self.spec.eval_split
        ds = self.dataset(split)
        # a tree whose images differ in size (found when it is indexed) cannot be stacked
        bs = 1 if self.info.variable_size or not ds.uniform_size else self.budget.batch_size
        return make_loader(ds, batch_size=bs, shuffle=False, seed=0)

    def calibration_images(self, n: int | None = None) -> torch.Tensor:
        """Up to `n` training images at the evaluation transform (for PTQ calibration)."""
        n = n or self.budget.calibration_images
        ds = self.dataset("train", train=False)
        return torch.stack([ds[i][0] for i in range(min(n, len(ds)))])

    @cached_property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Batch-1 input shape at the evaluation size: what MAdds and latency use."""
        img, _ = self.dataset(self.spec.eval_split)[0]
        return (1, *img.shape)

    def class_weight_info(self) -> dict[str, Any] | None:
        """The class weighting training used (kind, per-class pixel counts at the training
        resolution, weights), for the run record; None when unweighted."""
        from bench.train import class_weights

        if self.spec.train.class_weights == "none":
            return None
        ds = self.dataset("train", train=True)
        return {"kind": self.spec.train.class_weights,
                "pixel_counts": [int(c) for c in ds.class_pixel_counts()],
                "weights": class_weights(self.spec.train, ds)}

    # -- models ------------------------------------------------------------------------
    def build_model(self, name: str | None = None, **kwargs: Any) -> nn.Module:
        from models import create_model

        torch.manual_seed(self.seed)
        name = name or self.spec.model
        kw = dict(self.spec.model_kwargs) if name == self.spec.model and not kwargs else kwargs
        return create_model(name, num_classes=self.num_classes, **kw)

    def baseline(self, name: str | None = None, **kwargs: Any) -> tuple[nn.Module, dict]:
        """A trained baseline (trained now if not cached) on this run's dataset, budget and
        seed, and its cache info (`run_id`, training cost). Returns a private copy."""
        name = name or self.spec.model
        kw = kwargs if kwargs or name != self.spec.model else dict(self.spec.model_kwargs)
        spec = self.spec.weights_spec()
        spec.model, spec.model_kwargs = name, kw
        key = spec.run_id
        t0 = time.perf_counter()
        if key not in self._baselines:
            model = self.build_model(name, **kw)
            log = self.results / "logs" / f"baseline-{key}.csv"
            info, trained = get_or_train(
                model, self.results, key,
                lambda m: self.train(m, self.budget.epochs, self.budget.lr, (),
                                     desc=f"baseline {name}", log_csv=log),
                {"model": name, "model_kwargs": kw, "dataset": self.spec.dataset,
                 "budget": self.budget.name, "seed": self.seed, "run_id": key},
            )
            info = {**info, "trained_now": trained}
            self._baselines[key] = (model, info)
            self.baseline_costs[f"{name}:{key}"] = float(info["train"]["seconds"])
        model, info = self._baselines[key]
        self.baseline_wall_s += time.perf_counter() - t0
        return copy.deepcopy(model).to(self.device), info

    # -- loops -------------------------------------------------------------------------
    def train(self, model: nn.Module, epochs: int, lr: float, stages=(), desc: str = "train",
              log_csv: Path | None = None) -> dict:
        return train(
            model, self.dataset("train", train=True), epochs=epochs, lr=lr,
            batch_size=self.budget.batch_size, cfg=self.spec.train, device=self.device,
            ignore_index=self.ignore_index, seed=self.seed, stages=stages, ctx=self,
            log_csv=log_csv, desc=desc,
        )

    def evaluate(self, predict, split: str | None = None, desc: str = "eval") -> dict:
        """Scores on `split` (default: the spec's eval_split, val unless asked)."""
        if isinstance(predict, nn.Module):
            predict.to(self.device).eval()
        t0 = time.perf_counter()
        out = evaluate(
            predict, self.eval_batches(split), self.num_classes, self.ignore_index, self.device,
            progress=lambda it: tqdm(it, desc=desc, leave=False, disable=None, unit="batch"),
        )
        out["eval_seconds"] = time.perf_counter() - t0
        return out
