"""The segmentation model zoo. Builders register themselves with `@register_model`."""

from models.registry import (
    MODELS,
    ModelInfo,
    cpu_default_models,
    create_model,
    list_models,
    model_info,
    register_model,
)

__all__ = [
    "MODELS",
    "ModelInfo",
    "cpu_default_models",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
]
