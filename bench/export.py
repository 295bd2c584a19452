"""Model <-> artifact: what a run writes and what `verify` and users load back.

`load_model` needs nothing but the file: the header names the zoo model and the pipeline
stages, each stage rebuilds its structure, then the decoded state loads strictly (every
tensor must match). That is why `size_bytes` can be trusted: the bytes measured are the
bytes that rebuild the evaluated model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from bench.artifact import ArtifactError, encode_state, read_artifact, write_artifact
from bench.method import Stage, stages_from_record

if TYPE_CHECKING:
    from bench.context import RunContext


def export_model(model: nn.Module, path: Path, *, model_name: str, num_classes: int,
                 model_kwargs: dict[str, Any], stages: list[Stage], ctx: RunContext,
                 run_id: str | None = None) -> Path:
    unsign_zeros(model)
    header = {
        "segbench_artifact": 1,
        "run_id": run_id,
        "model": {"name": model_name, "num_classes": num_classes, "kwargs": model_kwargs},
        "stages": [
            {"method": s.name, "version": s.method.version, "config": s.config_dict(),
             "meta": s.method.artifact_meta(model)}
            for s in stages
        ],
    }
    tensors = encode_state(model.state_dict())
    for s in stages:
        tensors = s.method.encode(ctx, model, tensors)
    return write_artifact(path, header, tensors)


def unsign_zeros(model: nn.Module) -> int:
    """Turn every -0.0 of the model's floating state into +0.0, in place; returns how many.

    Why: with denormals flushed (bench/numerics.py) training leaves thousands of -0.0 weights
    (a fine-tuned CamVid ENet held 6,734), and encodings that store values by equality (the
    codebook of `kmeans`) write them as +0.0, so the state digest of a lossless stage such as
    `huffman` no longer matched the reloaded model. Both zeros compute the same outputs; one
    canonical zero makes the artifact's round trip exact bit for bit."""
    flipped = 0
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                neg = (t == 0) & torch.signbit(t)
                n = int(neg.sum())
                if n:
                    t.masked_fill_(neg, 0.0)
                    flipped += n
    return flipped


def load_model(path: Path) -> tuple[nn.Module, dict[str, Any], list[Stage]]:
    """Rebuild the model an artifact describes. Raises ArtifactError if it cannot."""
    from models import create_model

    header, state = read_artifact(path)
    problem = header_problem(header)
    if problem:
        raise ArtifactError(f"{path}: {problem}")
    try:
        m = header["model"]
        model = create_model(m["name"], num_classes=m["num_classes"], **m.get("kwargs", {}))
        stages = stages_from_record(header.get("stages", []))
        for st, rec in zip(stages, header.get("stages", [])):
            model = st.method.rebuild(model, rec.get("meta", {}))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # whatever the header makes a builder or a stage raise
        raise ArtifactError(f"{path}: header does not describe a buildable model "
                            f"({type(e).__name__}: {e})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"{path}: state does not fit the rebuilt model: {e}") from None
    model.eval()
    return model, header, stages


# the most classes a header may ask a model for: no dataset segbench knows has more than
# a few hundred, and the classifier is allocated before the state is checked against it
MAX_CLASSES = 1024


def header_problem(header: dict[str, Any]) -> str | None:
    """What in an artifact header's model and stage list is out of range, checked before
    anything is built from it (the stages check their own metadata in `rebuild`)."""
    m = header.get("model")
    if not isinstance(m, dict):
        return "header has no model object"
    if not isinstance(m.get("name"), str):
        return "header's model name is not a string"
    n = m.get("num_classes")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CLASSES:
        return f"header's num_classes {n!r:.40} is not an integer in 1..{MAX_CLASSES}"
    if not isinstance(m.get("kwargs", {}), dict):
        return "header's model kwargs are not an object"
    stages = header.get("stages", [])
    if not isinstance(stages, list) or not all(
            isinstance(s, dict) and isinstance(s.get("config", {}), dict)
            and isinstance(s.get("meta", {}), dict) for s in stages):
        return "header's stages are not a list of objects with config and meta objects"
    return None


def stage_problems(model: nn.Module, header: dict[str, Any], stages: list[Stage]) -> list[str]:
    """Every stage's `check` of its declared property on the loaded model ([]: all hold)."""
    return [f"{st.name}: {p}" for st, rec in zip(stages, header.get("stages", []))
            for p in st.method.check(model, rec.get("meta", {}))]


def select_predictor(model: nn.Module, path: Path, stages: list[Stage], ctx: RunContext):
    """What evaluation and timing run: the last stage's runtime (e.g. onnxruntime) if a
    stage provides one, else the reloaded PyTorch model. Returns (predict, runtime name)."""
    predict, runtime = model, "torch"
    for st in stages:
        p = st.method.predictor(ctx, model, path)
        if p is not None:
            predict, runtime = p, st.method.runtime
    return predict, runtime
