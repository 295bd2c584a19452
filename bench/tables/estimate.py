"""What a missing run will cost, for `python -m bench tables --dry-run`.

An estimate, not a promise: the multiply-adds the run will execute (baseline training if
its checkpoint is not cached, the method's training, evaluation, latency timing), divided
by this machine's measured convolution throughput times NETWORK_EFFICIENCY, plus a fixed
cost per run and per megabyte of weights (building, saving, exporting and reloading the
model). Training counts a forward and a backward pass as 3 forwards; a distillation stage
adds a teacher forward per image. The two constants were measured on the 2-core
development machine (DeepLabV3+ ResNet-50 and ENet at the smoke budget), where whole
networks at small batches ran at about a third of a single large convolution's rate.
The run's own part that is not training (evaluation, timing, the fixed costs) is
multiplied by 1 + its stages' excess cost factors (`Method.cost_factor`: ptq's AdaRound
or GPTQ cost many times its minmax calibration).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from bench.atomic import atomic_write_text
from bench.spec import RunSpec

NETWORK_EFFICIENCY = 1 / 3  # whole-network passes vs the benchmark convolution
SECONDS_PER_RUN = 0.5  # plus SECONDS_PER_MB per MB of dense weights, per model handled
SECONDS_PER_MB = 0.025


def measured_madds_per_second() -> float:
    """Forward throughput of a mid-sized 3x3 convolution now, at the current thread count
    (best of five), in multiply-adds per second."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).eval()
    x = torch.randn(4, 64, 48, 48)
    work = x.shape[0] * 64 * 48 * 48 * 64 * 9
    best = float("inf")
    with torch.inference_mode():
        conv(x)
        for _ in range(5):
            t0 = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - t0)
    return work / best


def _best_file() -> Path:
    root = os.environ.get("SEGBENCH_DATA_CACHE") or Path.home() / ".cache" / "segbench"
    return Path(root) / "throughput.json"


@lru_cache(maxsize=1)
def madds_per_second() -> float:
    """The highest throughput this machine has shown at this thread count (kept in the
    user cache, measured again on every call): a busy host's momentary rate would make the
    same grid read 44 min one hour and 12 h the next. Estimates are thus for the machine
    as it runs when it is not shared; `now_madds_per_second` says how busy it is."""
    now = now_madds_per_second()
    key = f"{platform.processor() or platform.machine()}|{torch.get_num_threads()}"
    path = _best_file()
    try:
        seen = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(seen, dict):
            seen = {}
    except (OSError, ValueError):
        seen = {}
    best = max(float(seen.get(key, 0.0)), now)
    if best > float(seen.get(key, 0.0)):
        try:
            atomic_write_text(path, json.dumps({**seen, key: best}, indent=1) + "\n")
        except OSError:
            pass  # a read-only cache: the estimate still uses what it measured
    return best


@lru_cache(maxsize=1)
def now_madds_per_second() -> float:
    return measured_madds_per_second()


def split_size(spec: RunSpec, split: str) -> int | None:
    """Images the run's budget uses from a split (None when unknown without the data)."""
    cap = spec.budget.train_images if split == "train" else spec.budget.eval_images
    if spec.dataset == "synthetic":
        from bench.data.synthetic import SPLIT_SIZES

        return min(cap or SPLIT_SIZES[split], SPLIT_SIZES[split])
    return cap


def eval_hw(spec: RunSpec) -> tuple[int, int]:
    if spec.dataset == "synthetic":
        from bench.data.synthetic import SIZE

        return (SIZE, SIZE)
    s = spec.budget.eval_size or spec.budget.crop_size
    return (s, s)


def finetune_epochs(cls, stage: dict, spec: RunSpec, results: Path) -> int:
    """The stage's own answer where it needs nothing but the budget (most do); the
    budget's fine-tuning epochs where it needs more of a live run (data, a model)."""
    from bench.context import RunContext

    try:
        method = cls(cls.Config(**stage.get("config", {})))
        ctx = RunContext(spec, device=torch.device("cpu"), results=results)
        return int(method.finetune_epochs(ctx))
    except Exception:  # a hook that reads more of the context than an estimate has
        return spec.budget.finetune_epochs


@dataclass
class Estimate:
    seconds: float
    trains_baseline: bool
    exact: bool  # False when image counts were unknown (real data without a cap)


def estimate(spec: RunSpec, results: Path, num_classes: int, static_of,
             planned_baselines: set[str]) -> Estimate:
    """`static_of(model, kwargs, (H, W))` -> the no-training metrics (bench/tables/
    static.py) at that size; `planned_baselines` holds baseline keys an earlier run of the
    same plan will already have trained (updated)."""
    from bench.baseline import cache_paths
    from bench.method import METHODS

    b = spec.budget
    n_train = split_size(spec, "train")
    n_eval = split_size(spec, "val")
    exact = n_train is not None and n_eval is not None
    n_train = n_train if n_train is not None else 1000
    n_eval = n_eval if n_eval is not None else 500
    crop, ev = (b.crop_size, b.crop_size), eval_hw(spec)
    def madds_of(model, kwargs, size):
        return static_of(model, kwargs, size)["madds"]

    def io(model, kwargs) -> float:
        return SECONDS_PER_MB * static_of(model, kwargs, ev)["dense_size"] / 1e6

    train_img = madds_of(spec.model, spec.model_kwargs, crop)
    eval_img = madds_of(spec.model, spec.model_kwargs, ev)
    work, fixed = 0.0, SECONDS_PER_RUN + 2 * io(spec.model, spec.model_kwargs)

    def need_baseline(model: str, kwargs: dict) -> bool:
        base = spec.weights_spec()
        base.model, base.model_kwargs = model, dict(kwargs)
        key = base.run_id
        if key in planned_baselines or cache_paths(results, key)[0].exists():
            return False
        planned_baselines.add(key)
        return True

    work += (n_eval + 1 + 2 * (b.latency_runs + b.latency_warmup)) * eval_img  # paired timing
    if not spec.is_baseline:
        from bench.method import stage_cost_factors

        excess = sum(f - 1 for f in stage_cost_factors(spec.stages))
        work, fixed = work * (1 + excess), fixed * (1 + excess)
    trains_baseline = need_baseline(spec.model, spec.model_kwargs)
    if trains_baseline:
        work += b.epochs * n_train * 3 * train_img
        fixed += SECONDS_PER_RUN + io(spec.model, spec.model_kwargs)
    if not spec.is_baseline:
        classes = [METHODS.get(st["method"]) for st in spec.stages]
        for i, (st, cls) in enumerate(zip(spec.stages, classes)):
            # the stages' own schedule rules (methods/distill/method.py): a distiller trains a
            # fresh student on the baseline's epochs only when every stage before it built
            # one, else it fine-tunes; a student builder trains unless a distiller follows
            fresh = all(c.builds_student for c in classes[:i])
            epochs = b.epochs if fresh else b.finetune_epochs
            if cls.builds_student:
                later = any(c.trains_student for c in classes[i + 1:])
                work += (0 if later else b.epochs) * n_train * 3 * train_img
            elif cls.trains_student:
                teacher = st["config"].get("teacher") or spec.model
                tkw = st["config"].get("teacher_kwargs") or (
                    spec.model_kwargs if teacher == spec.model else {})
                if need_baseline(teacher, tkw):
                    work += b.epochs * n_train * 3 * madds_of(teacher, tkw, crop)
                    fixed += SECONDS_PER_RUN + io(teacher, tkw)
                work += epochs * n_train * (3 * train_img + madds_of(teacher, tkw, crop))
                work += n_eval * madds_of(teacher, tkw, ev)  # the teacher is scored too
                fixed += io(teacher, tkw)
            else:
                work += finetune_epochs(cls, st, spec, results) * n_train * 3 * train_img
    seconds = work / (madds_per_second() * NETWORK_EFFICIENCY) + fixed
    return Estimate(seconds, trains_baseline, exact)
