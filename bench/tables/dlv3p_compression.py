"""The DeepLabV3+ compression report (PASCAL VOC 2012 aug, crop 256x256, 21 classes):
ASPP block variants, distillation into those students, and the compressed ASPP
decoders, each on ResNet-50 and MobileNetV2.

Model variants are zoo kwargs of `deeplabv3plus_*` (models/deeplabv3plus.py):
`output_stride` 16 | 32, `ksac` True | False, `aspp` standard | ds | btn | caspp1..4.
Params and MAdds are counted at the report's 256x256 whatever the dataset; IoU comes from
runs on the chosen dataset and budget.
"""

from __future__ import annotations

from bench.tables.schema import CI_SMOKE, Field, Metric, Row, Run, Static, Table

R50, MNV2 = "deeplabv3plus_resnet50", "deeplabv3plus_mobilenetv2"
BACKBONES = {R50: ("r50", "ResNet-50"), MNV2: ("mnv2", "MobileNetV2")}
OUTPUT_STRIDES = (16, 32)
KSAC = (True, False)
BLOCKS = (("standard", "ST"), ("ds", "DS"), ("btn", "BTN"))
DECODERS = (("standard", "ASPP"), ("caspp1", "CASPP-1"), ("caspp2", "CASPP-2"),
            ("caspp3", "CASPP-3"), ("caspp4", "CASPP-4"))
REPORT = "DeepLabV3+ compression report (PASCAL VOC 2012 aug, crop 256×256, 21 classes)"
SIZE = (256, 256)  # the report's crop: Params/MAdds are counted here on every dataset

# the report's teacher: ResNet-50, output stride 16, KSAC, standard ASPP
TEACHER = R50
TEACHER_KWARGS = {"output_stride": 16, "ksac": True, "aspp": "standard"}

# `smoke` runs a handful of images per run (schema.CI_SMOKE), so these tables fit CI
BUDGET_OVERRIDES = {"smoke": CI_SMOKE}


DEVIATION = (
    "Deviation from the report: the installed `kd`/`at` plugins take the teacher as a zoo "
    "model name without model kwargs (no `teacher_kwargs` setting), and a teacher of the "
    "student's own zoo model is built with the student's kwargs. So ResNet-50 students are "
    "distilled from their own architecture (self-distillation), and MobileNetV2 students "
    "from DeepLabV3+ ResNet-50 at the zoo defaults (OS 16, standard ASPP, no KSAC), not from "
    "the report's KSAC teacher.")


def teacher_run(method: str, **sets) -> Run:
    """A distillation run from the report's teacher; its kwargs apply once the plugin
    takes them (`teacher_kwargs`), and the caption says so while it does not."""
    return Run(method, {"teacher": TEACHER, **sets},
               optional={"teacher_kwargs": dict(TEACHER_KWARGS)}, dropped_note=DEVIATION)


def _variant_fields(os_: int, ksac: bool) -> dict:
    return {"OS": os_, "KSAC": ksac}


def block_rows(model: str) -> tuple[Row, ...]:
    """OS {16, 32} x KSAC {yes, no} x ASPP block {standard, ds, btn}."""
    rows = []
    for os_ in OUTPUT_STRIDES:
        for ksac in KSAC:
            for kind, label in BLOCKS:
                flags = {lab: kind == k for k, lab in BLOCKS}
                rows.append(Row(model, {**_variant_fields(os_, ksac), **flags, "ASPP": label},
                                {"output_stride": os_, "ksac": ksac, "aspp": kind}))
    return tuple(rows)


def decoder_rows(model: str) -> tuple[Row, ...]:
    """OS {16, 32} x KSAC {yes, no} x decoder {ASPP, CASPP-1..4}."""
    return tuple(Row(model, {**_variant_fields(os_, ksac), "Decoder": label},
                     {"output_stride": os_, "ksac": ksac, "aspp": kind})
                 for os_ in OUTPUT_STRIDES for ksac in KSAC for kind, label in DECODERS)


IOU = Metric("IoU", "miou", fmt="pct")
PARAMS = Static("Params [M]", "params", fmt="M")
MADDS = Static("MAdds [G]", "madds", fmt="G")


def blocks_table(model: str) -> Table:
    short, name = BACKBONES[model]
    return Table(
        id=f"dlv3p-{short}-blocks",
        title=f"DeepLabV3+ {name}: output stride, KSAC and ASPP block",
        report=REPORT,
        rows=block_rows(model),
        columns=(Field("OS"), Field("KSAC"), Field("ST"), Field("DS"), Field("BTN"), IOU,
                 PARAMS, MADDS),
        static_size=SIZE,
        notes=("ST = standard 3×3 atrous convolutions, DS = depthwise-separable, BTN = "
               "bottleneck (1×1 reduce to 1/4, depthwise 3×3 atrous, 1×1 expand); DS and BTN "
               "also apply to the decoder's 3×3 convolution; KSAC shares each atrous "
               "branch's first block across the rates. IoU = mean IoU (%) on the validation "
               "split of the reloaded artifact. MAdds count convolutions and linear layers "
               "only; the report's also count BatchNorm and ReLU, a few per cent more on "
               "MobileNetV2.",),
        budget_overrides=BUDGET_OVERRIDES,
        needs_budget="full",
    )


def distill_table(model: str) -> Table:
    short, name = BACKBONES[model]
    at = [Metric(f"AT-{layers}", "miou", teacher_run("at", layers=layers), fmt="pct")
          for layers in ("output", "atrous", "all")]
    return Table(
        id=f"dlv3p-{short}-distill",
        title=f"DeepLabV3+ {name} students: attention transfer and knowledge distillation",
        report=REPORT,
        rows=block_rows(model),
        columns=(Field("OS"), Field("KSAC"), Field("ASPP"),
                 Metric("None", "miou", Run("none"), fmt="pct"), *at,
                 Metric("KD", "miou", teacher_run("kd"), fmt="pct")),
        static_size=SIZE,
        notes=("Mean IoU (%) of each student trained from scratch on the baseline schedule: "
               "without distillation (None), with attention transfer on the decoder output, "
               "the atrous branches, or both (AT-*, beta = 1000), or with knowledge "
               "distillation (KD, alpha = 0.9, T = 4). Teacher of the report: DeepLabV3+ "
               "ResNet-50, OS 16, KSAC, standard ASPP.",),
        budget_overrides=BUDGET_OVERRIDES,
        needs_budget="full",
    )


def caspp_table(model: str) -> Table:
    short, name = BACKBONES[model]
    return Table(
        id=f"dlv3p-{short}-caspp",
        title=f"DeepLabV3+ {name}: compressed ASPP decoders",
        report=REPORT,
        rows=decoder_rows(model),
        columns=(Field("OS"), Field("KSAC"), Field("Decoder"), IOU, PARAMS, MADDS),
        static_size=SIZE,
        notes=("CASPP-n replaces every atrous branch by a stack of n bottlenecks with output "
               "widths CASPP-1 [N], CASPP-2 [2N, N], CASPP-3 [4N, 2N, N], CASPP-4 "
               "[4N, 2N, N, N], N = 256, and the decoder's 3×3 convolution by the bottleneck, "
               "so CASPP-1 is BTN; KSAC shares each branch's first bottleneck across the "
               "rates.",),
        budget_overrides=BUDGET_OVERRIDES,
        needs_budget="full",
    )


TABLES = tuple(f(m) for f in (blocks_table, distill_table, caspp_table) for m in (R50, MNV2))
