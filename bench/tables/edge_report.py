"""The edge-deployment report (FCN and U-Net): what 60 % gradual sparsification, then
int8 quantization on top, do to the stored size and the accuracy.

Sizes are bytes of the exported artifacts (sparse encodings, packed integers), the dense
size is the fp32 weights as safetensors; the reductions are against that dense size.
"""

from __future__ import annotations

from bench.tables.schema import CI_SMOKE, Derived, Field, Metric, Row, Run, Static, Table

REPORT = "edge-deployment report (FCN and U-Net)"
SPARSITY = 0.6
SPARSE = Run("prune_unstructured", {"sparsity": SPARSITY, "schedule": "gradual"})
SPARSE_INT8 = Run("prune_unstructured+qat",
                  {"prune_unstructured.sparsity": SPARSITY,
                   "prune_unstructured.schedule": "gradual",
                   "qat.weight_bits": 8, "qat.act_bits": 8})
# `smoke` runs a handful of images per run (schema.CI_SMOKE), so these tables fit CI
BUDGET_OVERRIDES = {"smoke": CI_SMOKE}


def reduction(size_key: str):
    """1 - size / dense size, in %."""
    def fn(v):
        if v.get(size_key) is None or not v.get("dense"):
            return None
        return 100.0 * (1.0 - v[size_key] / v["dense"])
    return fn


EDGE_SIZE = Table(
    id="edge-size",
    title="Model size after gradual sparsification and int8 quantization",
    report=REPORT,
    rows=(Row("fcn_resnet50", {"Model": "FCN (ResNet-50)"}), Row("unet", {"Model": "U-Net"})),
    columns=(
        Field("Model"),
        Static("Dense [MB]", "dense_size", fmt="MB", key="dense"),
        Metric("Dense mIoU [%]", "miou", Run("none"), fmt="pct"),
        Metric("Sparse [MB]", "size_bytes", SPARSE, fmt="MB", key="sparse"),
        Metric("Sparse mIoU [%]", "miou", SPARSE, fmt="pct"),
        Derived("Sparse red. [%]", reduction("sparse"), ("sparse", "dense"), fmt="percent"),
        Metric("Sparse+int8 [MB]", "size_bytes", SPARSE_INT8, fmt="MB", key="int8"),
        Metric("Sparse+int8 mIoU [%]", "miou", SPARSE_INT8, fmt="pct"),
        Derived("Sparse+int8 red. [%]", reduction("int8"), ("int8", "dense"), fmt="percent"),
    ),
    notes=(f"Sparse: `prune_unstructured` to {SPARSITY:.0%} of the prunable weights with the "
           "gradual (AGP) schedule during fine-tuning, stored in a sparse encoding. "
           "Sparse+int8: the same, then `qat` W8A8 (quantization-aware fine-tuning, weights "
           "packed as 8-bit integers, run in onnxruntime). mIoU on the validation split of "
           "the reloaded artifact.",),
    budget_overrides=BUDGET_OVERRIDES,
)

TABLES = (EDGE_SIZE,)
