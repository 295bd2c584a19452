"""The smartphone real-time segmentation thesis: light models against a DeepLabV3+
ResNet-50 teacher, trained on synthetic data and tested on a real test set.

Cost (FLOPs, CPU latency at batch 1, size), accuracy on the test split (and on a second
dataset with `--set real_dataset=NAME`, which must share the training label set), and the
training loss of each light model: cross-entropy, the IoU loss, or distillation from the
teacher.
"""

from __future__ import annotations

from bench.tables.schema import CI_SMOKE, Field, Metric, Row, Run, Static, Table

REPORT = "smartphone real-time segmentation thesis (synthetic training data, a real test set)"
TEACHER = "deeplabv3plus_resnet50"
LIGHT = (("enet", "ENet"), ("linknet", "LinkNet"), ("mobileseg", "MobileSeg"),
         ("fastlinknet", "FastLinkNet"))
ROWS = (Row(TEACHER, {"Model": "Teacher (DeepLabV3+ ResNet-50)"}),
        *(Row(m, {"Model": name}) for m, name in LIGHT))
LIGHT_ROWS = ROWS[1:]

# `smoke` runs a handful of images per run (schema.CI_SMOKE), so these tables fit CI
BUDGET_OVERRIDES = {"smoke": CI_SMOKE}

RT_COST = Table(
    id="rt-cost",
    title="Computational cost of the teacher and the light models",
    report=REPORT,
    rows=ROWS,
    columns=(Field("Model"), Static("FLOPs [B]", "flops", fmt="G"),
             Metric("Inference time [ms]", "latency_ms", fmt="ms"),
             Static("Size [MB]", "dense_size", fmt="MB")),
    notes=("Inference time: median of batch-1 forward passes of the trained model at the "
           "evaluation size after warm-up (on the device and thread count named below); size: "
           "the fp32 weights as safetensors.",),
    budget_overrides=BUDGET_OVERRIDES,
)

RT_ACCURACY = Table(
    id="rt-accuracy",
    title="Accuracy of the teacher and the light models",
    report=REPORT,
    rows=ROWS,
    columns=(Field("Model"),
             Metric("Test pixel acc. [%]", "test:pixel_acc", fmt="pct"),
             Metric("Test IoU [%]", "test:miou", fmt="pct"),
             Metric("2nd set pixel acc. [%]", "real:pixel_acc", fmt="pct",
                    requires="real_dataset"),
             Metric("2nd set IoU [%]", "real:miou", fmt="pct", requires="real_dataset")),
    notes=("Scores of each run's reloaded artifact on the test split of the training dataset "
           "(and on the test split of the second dataset when `--set real_dataset=NAME` is "
           "given; its root is `--set real_root=DIR` or `--data-root`). IoU = mean IoU.",),
    budget_overrides=BUDGET_OVERRIDES,
)

RT_LOSS = Table(
    id="rt-loss",
    title="Training loss of the light models: cross-entropy, IoU loss, distillation",
    report=REPORT,
    rows=LIGHT_ROWS,
    columns=(Field("Model"),
             Metric("Cross-entropy", "miou", Run("none"), fmt="pct"),
             Metric("IoU loss", "miou", Run("none", train={"loss": "iou"}), fmt="pct"),
             Metric("Distillation", "miou", Run("kd", {"teacher": TEACHER}), fmt="pct")),
    notes=("Validation mean IoU (%) of each light model trained from scratch on the same "
           "schedule with cross-entropy, with the IoU loss (1 - soft IoU, Rahman & Wang "
           "2016), or with knowledge distillation from the DeepLabV3+ ResNet-50 teacher "
           "(`kd`, alpha = 0.9, T = 4).",),
    budget_overrides=BUDGET_OVERRIDES,
)

TABLES = (RT_COST, RT_ACCURACY, RT_LOSS)
