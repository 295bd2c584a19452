"""The columns that need no training: parameters, MAdds, FLOPs and the dense fp32 size of
a freshly built zoo model, computed with the same functions the runner uses
(`bench.complexity.count_madds`, `bench.artifact.state_bytes_dense`).

Building a DeepLabV3+ ResNet-50 and counting it at 256x256 takes seconds on a shared CPU,
and a report declares dozens of variants, so results are cached as JSON under
`<results>/cache/tables/static/`, keyed by the model, its kwargs, the class count, the
input size and a digest of the zoo's source files (an edited model is recounted).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from bench.atomic import atomic_write_text
from bench.spec import stable_hash


@lru_cache(maxsize=1)
def zoo_digest() -> str:
    """SHA-256 over the zoo's source files: part of every cache key."""
    import models

    h = hashlib.sha256()
    for p in sorted(Path(models.__file__).parent.glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def compute(model_name: str, model_kwargs: dict[str, Any], num_classes: int,
            size: tuple[int, int]) -> dict[str, Any]:
    """params, MAdds (torchvision convention), FLOPs = 2 x MAdds, dense safetensors bytes."""
    from bench.artifact import state_bytes_dense
    from bench.complexity import count_madds
    from models import create_model

    torch.manual_seed(0)
    model = create_model(model_name, num_classes=num_classes, **model_kwargs).eval()
    cx = count_madds(model, (1, 3, *size))
    return {
        "params": cx.params,
        "madds": cx.madds,
        "flops": 2 * cx.madds,
        "dense_size": state_bytes_dense(model.state_dict()),  # shared kernels stored once
        "input_size": list(size),
    }


def static_metrics(model_name: str, model_kwargs: dict[str, Any], num_classes: int,
                   size: tuple[int, int], cache_dir: Path | None) -> dict[str, Any]:
    key = stable_hash({"model": model_name, "kwargs": dict(model_kwargs),
                       "classes": num_classes, "size": list(size), "zoo": zoo_digest()})
    path = cache_dir / f"{key}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass  # recomputed below
    out = compute(model_name, dict(model_kwargs), num_classes, size)
    if path is not None:
        atomic_write_text(path, json.dumps(out, sort_keys=True))
    return out
