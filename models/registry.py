"""The model zoo registry, shaped like timm's `register_model` / `create_model`.

Every builder carries the metadata a reader needs to check our model against its paper
(paper, year, default input size, output stride, published parameter count).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from bench.registry import Registry


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., nn.Module]
    paper: str = ""
    year: int | None = None
    input_size: tuple[int, int] = (512, 512)  # (H, W) of the paper's reference setting
    output_stride: int | None = None
    published_params: int | None = None  # as published, for `published_classes` classes
    published_classes: int | None = None
    published_madds: float | None = None  # multiply-adds (G) at `input_size`, where published
    cpu_default: bool = False  # part of the CPU zoo subset `make bench` uses by default
    extra: dict[str, Any] = field(default_factory=dict)


def _import_all_models() -> None:
    # the zoo's folder, not `import models`: that package imports this module
    for mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if mod.name not in {"registry"} and not mod.name.startswith("_"):
            importlib.import_module(f"models.{mod.name}")


MODELS: Registry[ModelInfo] = Registry("model", loader=_import_all_models)


def register_model(
    name: str | None = None,
    *,
    paper: str = "",
    year: int | None = None,
    input_size: tuple[int, int] = (512, 512),
    output_stride: int | None = None,
    published_params: int | None = None,
    published_classes: int | None = None,
    published_madds: float | None = None,
    cpu_default: bool = False,
    **extra: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register `fn(num_classes=..., **kwargs) -> nn.Module` under `name`."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.add(
            name or fn.__name__,
            ModelInfo(
                name=name or fn.__name__,
                builder=fn,
                paper=paper,
                year=year,
                input_size=tuple(input_size),
                output_stride=output_stride,
                published_params=published_params,
                published_classes=published_classes,
                published_madds=published_madds,
                cpu_default=cpu_default,
                extra=dict(extra),
            ),
        )
        return fn

    return deco


def create_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    return MODELS.get(name).builder(num_classes=num_classes, **kwargs)


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)


def model_info(name: str) -> ModelInfo:
    return MODELS.get(name)


def cpu_default_models() -> list[str]:
    return [n for n in MODELS.names() if MODELS.get(n).cpu_default]
