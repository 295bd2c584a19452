"""Models and images for the figures that run a network: a run's artifact reloaded the way
`python -m bench verify` reloads it, a cached trained baseline (never trained here: a
figure must not start training), and fixed validation images."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.plots.records import artifact_path

# `plots --data-root`: where a real dataset is on this machine (else the run's recorded root)
DATA_ROOT: Path | None = None


def data_root(rec: dict[str, Any]) -> Path | None:
    """The real dataset's root for a run's figures: `--data-root`, else the root the run
    recorded if it still exists here; None for synthetic data."""
    if DATA_ROOT is not None:
        return DATA_ROOT
    recorded = (rec.get("data_root") or {}).get("resolved")
    return Path(recorded) if recorded and Path(recorded).is_dir() else None


def run_context(rec: dict[str, Any], results: Path):
    from bench.context import RunContext
    from bench.spec import spec_from_dict

    return RunContext(spec_from_dict(rec["config"]), device=torch.device("cpu"),
                      results=Path(results), data_root=data_root(rec))


def reloaded(rec: dict[str, Any], results: Path, ctx=None) -> tuple[nn.Module, Callable]:
    """(model, predict): the artifact's model and what the run evaluated with (its stages'
    predictor, e.g. onnxruntime, or the model itself)."""
    from bench.export import load_model, select_predictor

    path = artifact_path(rec, results)
    model, _, stages = load_model(path)
    model.eval()
    predict, _ = select_predictor(model, path, stages, ctx or run_context(rec, results))
    return model, predict


def cached_baseline(rec: dict[str, Any], results: Path, name: str,
                    kwargs: dict[str, Any]) -> nn.Module | None:
    """The trained baseline of zoo model `name` (kwargs) on `rec`'s dataset, budget, seed
    and training config, from the cache `RunContext.baseline` writes; None if absent."""
    from bench.baseline import load_cached
    from bench.data import DATASETS
    from bench.spec import spec_from_dict
    from models import create_model

    spec = copy.copy(spec_from_dict(rec["config"]).baseline_spec())
    spec.model, spec.model_kwargs = name, dict(kwargs)
    torch.manual_seed(spec.seed)
    model = create_model(name, num_classes=DATASETS.get(spec.dataset).num_classes, **kwargs)
    if load_cached(model, Path(results), spec.run_id) is None:
        return None
    return model.eval()


def val_images(ctx, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` validation images spread evenly over the split (eval transform) and their labels:
    fixed images, the same for every run of a dataset (real splits are video sequences,
    where neighbouring images are near copies of each other)."""
    ds = ctx.dataset("val")
    k = min(n, len(ds))
    items = [ds[i * len(ds) // k] for i in range(k)]
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def display_image(x: torch.Tensor) -> Any:
    """A normalized CHW tensor back to an HWC array in [0, 1] for imshow."""
    from bench.data.base import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x.cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
