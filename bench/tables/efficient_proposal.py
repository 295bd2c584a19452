"""The resource-efficient segmentation proposal (FCN, SegNet, ENet): one compression
strategy at a time and all combined, against the proposal's embedded constraints of a
model under 10 MB that segments an image in under 1 s on the CPU.
"""

from __future__ import annotations

from bench.tables.schema import CI_SMOKE, Derived, Field, Metric, Row, Run, Table

REPORT = "resource-efficient segmentation proposal (FCN, SegNet, ENet)"
MODELS = (("fcn_resnet50", "FCN (ResNet-50)"), ("segnet", "SegNet"), ("enet", "ENet"))
STRATEGIES = (
    ("none", Run("none")),
    ("pruning", Run("prune_unstructured", {"sparsity": 0.75})),
    ("quantization", Run("qat", {"weight_bits": 8, "act_bits": 8})),
    ("weight sharing", Run("kmeans", {"bits": 5})),
    ("Huffman", Run("huffman")),
    ("all combined", Run("deep_compression")),
)
MAX_BYTES = 10e6  # "< 10 MB"
MAX_MS = 1000.0  # "< 1 s per image on the CPU"
# `smoke` runs a handful of images per run (schema.CI_SMOKE), so these tables fit CI
BUDGET_OVERRIDES = {"smoke": CI_SMOKE}


def meets(v) -> bool | None:
    if v.get("size") is None or v.get("latency") is None:
        return None
    return v["size"] < MAX_BYTES and v["latency"] < MAX_MS


EFFICIENT_TRADEOFF = Table(
    id="efficient-tradeoff",
    title="Compression strategies against the embedded constraints",
    report=REPORT,
    rows=tuple(Row(m, {"Model": name, "Strategy": s}, run=run)
               for m, name in MODELS for s, run in STRATEGIES),
    columns=(
        Field("Model"), Field("Strategy"),
        Metric("mIoU [%]", "miou", fmt="pct"),
        Metric("Size [MB]", "size_bytes", fmt="MB", key="size"),
        Metric("Latency [ms]", "latency_ms", fmt="ms", key="latency"),
        Derived("< 10 MB and < 1 s", meets, ("size", "latency"), fmt="yesno",
                note="Constraints: artifact < 10 MB and median batch-1 latency < 1 s; the "
                     "latency check stands for the CPU only when the runs were timed on it."),
    ),
    notes=("Strategies: `prune_unstructured` to 75 % sparsity (one-shot, fine-tuned); `qat` "
           "W8A8 in onnxruntime; `kmeans` weight sharing with 5-bit indices (8 for the first "
           "and last layer); lossless `huffman` coding of the fp32 weights; all combined = "
           "`deep_compression` (pruning to 70 %, 8-bit k-means sharing, Huffman coding: Han "
           "et al. 2016). Size = bytes of the exported artifact; mIoU on the validation "
           "split of the reloaded artifact.",),
    budget_overrides=BUDGET_OVERRIDES,
)

TABLES = (EFFICIENT_TRADEOFF,)
