"""Model <-> artifact: what a run writes and what `verify` and users load back.

`load_model` needs nothing but the file: the header names the zoo model and the pipeline
stages, each stage rebuilds its structure, then the decoded state loads strictly (every
tensor must match). That is why `size_bytes` can be trusted: the bytes measured are the
bytes that rebuild the evaluated model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from bench.artifact import ArtifactError, encode_state, read_artifact, write_artifact
from bench.method import Stage, stages_from_record
from bench.registry import UnknownNameError

if TYPE_CHECKING:
    from bench.context import RunContext


def export_model(model: nn.Module, path: Path, *, model_name: str, num_classes: int,
                 model_kwargs: dict[str, Any], stages: list[Stage], ctx: RunContext,
                 run_id: str | None = None) -> Path:
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


def load_model(path: Path) -> tuple[nn.Module, dict[str, Any], list[Stage]]:
    """Rebuild the model an artifact describes. Raises ArtifactError if it cannot."""
    from models import create_model

    header, state = read_artifact(path)
    try:
        m = header["model"]
        model = create_model(m["name"], num_classes=int(m["num_classes"]), **m.get("kwargs", {}))
        stages = stages_from_record(header.get("stages", []))
        for st, rec in zip(stages, header.get("stages", [])):
            model = st.method.rebuild(model, rec.get("meta", {}))
    except (KeyError, TypeError, UnknownNameError) as e:
        raise ArtifactError(f"{path}: header does not describe a buildable model ({e})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"{path}: state does not fit the rebuilt model: {e}") from None
    model.eval()
    return model, header, stages


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
