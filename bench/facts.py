"""What a method reports about its run: the typed schema of a run record's `extras`.

A method does not write free keys into the record. It reports a `Fact`, a dataclass that
names where it goes (`key`) and declares its fields, with `ctx.report(fact)`; the fields
merge into `extras[key]` (several facts may share a key, e.g. what k-means learned while
compressing and what it wrote while encoding), or into `extras` itself when `key` is ""
(the quantization facts, which records have always kept at the top level). Whatever reads
a record (leaderboard, plots, tables) asks for a fact by its class with `read(rec, Cls)`
and gets the typed dataclass back, or None when the run did not report it; nobody reads
`extras` by string.

The facts read outside the plugin that reports them are declared here. A plugin declares
its own facts (read by nobody but people looking at the record) next to its code, the same
way: `@dataclass class KMeansSharing(Fact): key = "kmeans"; ...`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

F = TypeVar("F", bound="Fact")


class Fact:
    """Base of every reported fact. Subclasses are dataclasses and set `key`."""

    key: ClassVar[str]


class FactLog:
    """The record half of a run's context: the facts reported so far, in `extras`.
    `RunContext` is one; code that encodes or transforms a model outside a run (a test, a
    notebook) passes a bare `FactLog` to hooks that only report."""

    def __init__(self) -> None:
        self.extras: dict[str, Any] = {}  # the record's `extras`: written by `report` only

    def report(self, fact: Fact) -> None:
        """Keep a typed fact in the record."""
        report(self.extras, fact)


def report(extras: dict[str, Any], fact: Fact) -> None:
    """Merge `fact`'s fields into `extras` under its key (what `ctx.report` does)."""
    if not (isinstance(fact, Fact) and dataclasses.is_dataclass(fact)):
        raise TypeError(f"report() takes a Fact dataclass, not {type(fact).__name__}")
    values = {f.name: getattr(fact, f.name) for f in dataclasses.fields(fact)}
    target = extras if fact.key == "" else extras.setdefault(fact.key, {})
    target.update(values)


def read(rec: dict[str, Any], cls: type[F]) -> F | None:
    """The fact `cls` a record reports, or None if it holds none (or an incomplete one)."""
    extras = rec.get("extras") or {}
    src = extras if cls.key == "" else extras.get(cls.key)
    if not isinstance(src, dict):
        return None
    names = [f.name for f in dataclasses.fields(cls)]
    if not any(n in src for n in names):
        return None
    try:
        return cls(**{n: src[n] for n in names if n in src})
    except TypeError:  # a required field is missing
        return None


# -- distillation: read by the leaderboard (teacher and undistilled columns) and plots ---

@dataclass
class Teacher(Fact):
    """The frozen trained baseline a distillation stage learned from."""

    key: ClassVar[str] = "teacher"
    model: str
    model_kwargs: dict[str, Any]
    run_id: str | None
    train_seconds: float | None
    train_steps: int | None
    trained_now: bool | None
    miou: float


@dataclass
class StudentTraining(Fact):
    """How the student a stage builds or distils was trained."""

    key: ClassVar[str] = "student_training"
    trained_by: str  # the stage that trained it
    epochs: int
    lr: float
    init: str  # scratch | teacher | built by <stages> | compressed model


@dataclass
class Distill(Fact):
    """Which activations were compared, and the run of the same pipeline without the
    distillation stage (the same student trained without a teacher)."""

    key: ClassVar[str] = "distill"
    method: str
    student_layers: list[str]
    teacher_layers: list[str]
    undistilled_run_id: str


@dataclass
class DistillLoss(Fact):
    """Mean of every loss term over the training steps (task and distillation terms)."""

    key: ClassVar[str] = "distill"
    mean_loss_terms: dict[str, float]


# -- quantization: read by the leaderboard (onnxruntime speedup) --------------------------

@dataclass
class QuantLayers(Fact):
    key: ClassVar[str] = ""
    quant_layers: int
    quant_folded_batchnorms: int
    quant_activation_quantizers: int
    calibration_images: int


@dataclass
class QuantSites(Fact):
    """What the quantization plan did beyond convolutions and linears (transformers,
    PReLU): output quantizers by the type of module they follow, the modules of those
    types left float (their output reaches no integer op, or only the logits), and the
    activation x activation matmuls with both operands quantized or left float."""

    key: ClassVar[str] = "quant_sites"
    output_quantizers: dict[str, int]  # e.g. {"GELU": 8, "LayerNorm": 13, "Softmax": 8}
    float_outputs: dict[str, int]
    quantized_matmuls: int
    float_matmuls: int


@dataclass
class OrtGraph(Fact):
    """What onnxruntime runs for a quantized row: threads, memory layout, how many
    operators run in integer form and how many convolutions stayed float."""

    key: ClassVar[str] = ""
    ort_threads: int
    ort_layout: str
    ort_integer_ops: dict[str, int]
    ort_float_convs: int


@dataclass
class OrtTiming(Fact):
    """Older records only: onnxruntime latency of the integer model and of the float
    baseline, timed interleaved inside the plugin. Runs now time every row against its
    baseline in the runner (bench/latency.py, `metrics.speedup`); the leaderboard reads this
    only for a record made before that."""

    key: ClassVar[str] = ""
    ort_fp32_latency_ms: float
    ort_fp32_latency_iqr_ms: float
    ort_int_latency_ms: float
    ort_int_latency_iqr_ms: float
    ort_speedup: float
    ort_threads: int
    ort_layout: str
    ort_integer_ops: dict[str, int]
    ort_float_convs: int


@dataclass
class OrtAgreement(Fact):
    """Fraction of pixels whose argmax onnxruntime and the PyTorch model agree on."""

    key: ClassVar[str] = ""
    ort_argmax_agreement: float
    ort_agreement_target_met: bool


# -- deployment runtimes: read by the leaderboard's deployment-latency table ----------------

@dataclass
class DeployLatency(Fact):
    """The row timed in each runtime the grid names (`--set runtimes=...`), every timing
    paired with the trained baseline exported to the same runtime in the same process.
    `runtimes` maps a runtime to the fields of `RuntimeTiming`, or to `{"skipped": why}`
    when the row cannot run there, or `{"error": what}` when its export failed."""

    key: ClassVar[str] = "deploy"
    threads: int
    runtimes: dict[str, dict[str, Any]]

    def timings(self) -> dict[str, RuntimeTiming]:
        """The runtimes that were timed, typed."""
        names = {f.name for f in dataclasses.fields(RuntimeTiming)}
        return {k: RuntimeTiming(**{n: v[n] for n in names if n in v})
                for k, v in self.runtimes.items() if "speedup" in v}


@dataclass
class RuntimeTiming:
    """One runtime's entry of `DeployLatency`."""

    precision: str  # what the runtime computes in, read from its graph: fp32 or int8
    baseline_precision: str
    latency_ms: float
    latency_iqr_ms: float
    baseline_latency_ms: float
    speedup: float  # median of the per-round ratios baseline / row
    speedup_iqr: float
    speedup_p2_5: float
    speedup_p97_5: float
    noisy: bool
    # fraction of pixels whose argmax the runtime and the PyTorch model agree on, over
    # `agreement_images` validation images; `reference` names that PyTorch model
    agreement: float
    agreement_images: int
    reference: str
    detail: dict[str, Any] = field(default_factory=dict)


# -- unstructured pruning: read by the sparsity figure ---------------------------------------

@dataclass
class UnstructuredSparsity(Fact):
    key: ClassVar[str] = "prune_unstructured"
    prunable_layers: int
    prunable_weights: int
    zero_weights: int
    prunable_sparsity: float
    layer_sparsity: dict[str, float]  # layer -> fraction of zero weights
    dead_layers: list[str]  # layers with every weight zero
    schedule_events: list[tuple[int, float]] = field(default_factory=list)  # (step, sparsity)
    schedule_completed_in_finetuning: bool = True
    latency_kernel: str = ""


# -- mixed-precision quantization (weight_bits=auto) ------------------------------------------

@dataclass
class MixedPrecision(Fact):
    """The per-layer weight widths a `weight_bits=auto` run chose, and what it chose from:
    each chosen layer's sensitivity (relative squared error of the logits with only that
    layer's weights quantized, by bit-width) and the byte budget of their packed codes."""

    key: ClassVar[str] = "mixed_precision"
    layer_bits: dict[str, int]  # every quantized layer -> its weight bit-width
    chosen_layers: int  # layers whose width was chosen (the rest: first_last_bits)
    code_budget_bytes: int  # what the chosen layers' packed codes may take
    chosen_code_bytes: int  # what they take
    planned_payload_bytes: int  # the artifact's tensors as planned (header not counted)
    sensitivity: dict[str, dict[str, float]]  # layer -> bits -> relative logit error
    sensitivity_images: int
