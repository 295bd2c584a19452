"""Evaluations a run record does not hold: a finished run's artifact scored on another
split (the thesis reports the *test* split; records hold validation scores) or on a
second dataset (the thesis trains on synthetic data and tests on real images).

The artifact is reloaded exactly as `python -m bench verify` does it (the stages'
predictor included, so an onnxruntime-backed run is scored by the runtime it was timed
with), scored with the harness's `RunContext.evaluate`, and the scores are cached under
`<results>/cache/tables/evals/` keyed by the run, the dataset, the split and the budget's
evaluation settings, so tables regenerate without re-evaluating.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

from bench.atomic import atomic_write_text
from bench.spec import spec_from_dict, stable_hash


class EvalError(RuntimeError):
    """The artifact cannot be scored on the requested data (message says why)."""


def evaluate_record(rec: dict[str, Any], results: Path, split: str, dataset: str | None,
                    data_root: Path | None, device: torch.device) -> dict[str, Any]:
    """Scores (miou, pixel_acc) of `rec`'s artifact on `split` of `dataset` (default: the
    run's own dataset), cached."""
    from bench.context import RunContext
    from bench.data import DATASETS
    from bench.export import load_model, select_predictor

    spec = spec_from_dict(rec["config"])
    ds_name = dataset or spec.dataset
    info = DATASETS.get(ds_name)
    trained_on = DATASETS.get(spec.dataset)
    if info.num_classes != trained_on.num_classes:
        raise EvalError(f"dataset {ds_name!r} has {info.num_classes} classes and the model was "
                        f"trained on {spec.dataset!r} with {trained_on.num_classes}; a second "
                        f"test set must share the training label set")
    key = stable_hash({"run": rec["run_id"], "dataset": ds_name, "split": split,
                       "eval_images": spec.budget.eval_images, "eval_size": spec.budget.eval_size})
    cache = Path(results) / "cache" / "tables" / "evals" / f"{key}.json"
    if cache.is_file():
        try:
            return json.loads(cache.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    path = Path(rec["artifact"])
    path = path if path.is_absolute() else Path(results) / path
    model, _, stages = load_model(path)
    eval_spec = copy.copy(spec)
    eval_spec.dataset = ds_name
    ctx = RunContext(eval_spec, device=device, results=Path(results), data_root=data_root)
    model.to(device)
    predict, _ = select_predictor(model, path, stages, ctx)
    scores = ctx.evaluate(predict, split=split, desc=f"eval {split} {rec['run_id']}")
    out = {"miou": scores["miou"], "pixel_acc": scores["pixel_acc"], "dataset": ds_name,
           "split": split, "run_id": rec["run_id"]}
    atomic_write_text(cache, json.dumps(out, sort_keys=True))
    return out
