"""What the distillation methods (`kd`, `at`, `cwd`) and the student builder (`cheapconv`)
share: the frozen teacher, where a stage sits in its pipeline, training the student, a
forward probe of a model's structure, the layer sets that attention transfer reads, and
forward hooks that capture those layers.

Design decisions, all in one place because every distillation method follows them:

* The teacher is the cached baseline of the zoo model `teacher` ("" = the run's own model:
  self-distillation; `teacher_kwargs` for its model kwargs) on the run's dataset, budget
  and seed, trained if missing (`baselines_needed` lets executors train it first). It is held
  by the method object, never registered as a submodule of the student, so it never enters
  the student's state_dict or the artifact; it is in eval mode with `requires_grad=False`.
* A distillation stage that comes first in its pipeline (`kd`) builds a fresh student;
  after stages that build one (`cheapconv+kd`) it takes theirs. Either way the student is
  trained from scratch on the baseline's schedule (budget.epochs at budget.lr, same seed
  and data order), so the `none` (or `cheapconv`) row is the same student trained without
  distillation. After any other stage (`prune+kd`) it fine-tunes the compressed model on
  the fine-tuning schedule (budget.finetune_epochs at budget.lr * finetune_lr_scale).
* The runner's loop does the training, through `finetune_epochs`/`finetune_lr`, so every
  active stage's `loss` and `on_step` apply and the time shows as `finetune_s`.
* Hooks and adapters live only between `compress` and `finalize`.
"""

from __future__ import annotations

import copy
import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from bench.method import METHODS, Method, NotApplicable
from bench.registry import UnknownNameError

# -- teacher ------------------------------------------------------------------------------


@dataclass
class TeacherConfig:
    """The settings every distillation method shares (its Config subclasses this)."""

    teacher: str = ""  # zoo model of the teacher; "" = the student's own model
    teacher_kwargs: dict = field(default_factory=dict)  # its model kwargs ({}: as the run's)


def validate_teacher(name: str, kwargs: Any) -> None:
    """"" (the run's own model) or a zoo model name; an unknown name lists the zoo."""
    if name:
        from models import MODELS

        MODELS.get(name)  # raises UnknownNameError naming the valid models
    if not isinstance(kwargs, dict):
        raise ValueError(f"teacher_kwargs must be a JSON object, got {kwargs!r}")


def teacher_spec(config: TeacherConfig, model: str, model_kwargs: dict[str, Any]
                 ) -> tuple[str, dict[str, Any]]:
    """(zoo name, kwargs) of the teacher of a run of `model` with `model_kwargs`."""
    name = config.teacher or model
    kwargs = dict(config.teacher_kwargs) or (dict(model_kwargs) if name == model else {})
    return name, kwargs


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no gradients: a teacher's BatchNorm statistics and weights never move."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_teacher(ctx, config: TeacherConfig) -> nn.Module:
    """The frozen trained baseline of the configured teacher, evaluated once on the
    validation split; who it is and what it cost go to `ctx.extras["teacher"]`."""
    name, kwargs = teacher_spec(config, ctx.spec.model, ctx.spec.model_kwargs)
    teacher, info = ctx.baseline(name, **kwargs)
    freeze(teacher)
    scores = ctx.evaluate(teacher, desc=f"eval teacher {name}")
    train = info.get("train", {})
    ctx.extras["teacher"] = {
        "model": name,
        "model_kwargs": kwargs,
        "run_id": info.get("run_id"),
        "train_seconds": train.get("seconds"),
        "train_steps": train.get("steps"),
        "trained_now": info.get("trained_now"),
        "miou": scores["miou"],
    }
    return teacher


# -- pipeline position ----------------------------------------------------------------------


def stage_position(ctx, name: str) -> int:
    """Index of stage `name` in the run's pipeline (where it must appear exactly once)."""
    names = [s["method"] for s in ctx.spec.stages]
    if names.count(name) != 1:
        raise ValueError(f"stage {name!r} must appear exactly once in pipeline {ctx.spec.method!r}")
    return names.index(name)


def _flag(method_name: str, attr: str) -> bool:
    return bool(getattr(METHODS.get(method_name), attr, False))


def starts_fresh(ctx, position: int) -> bool:
    """True when every stage before `position` builds a fresh student (or there is none):
    the model reaching `position` is untrained and must get the full training schedule."""
    return all(_flag(s["method"], "builds_student") for s in ctx.spec.stages[:position])


def later_stage_trains(ctx, position: int) -> bool:
    """True when a stage after `position` trains the student itself (a distiller)."""
    return any(_flag(s["method"], "trains_student") for s in ctx.spec.stages[position + 1 :])


def check_single_distiller(ctx) -> None:
    names = [s["method"] for s in ctx.spec.stages if _flag(s["method"], "trains_student")]
    if len(names) > 1:
        raise ValueError(
            f"pipeline {ctx.spec.method!r} has {len(names)} distillation stages "
            f"({', '.join(names)}); compose at most one of kd, at, cwd per pipeline"
        )


def undistilled_run_id(ctx, position: int) -> str:
    """Run id of the same pipeline without the stage at `position`: the same student
    trained without distillation (the baseline when nothing else is left)."""
    rest = [s for i, s in enumerate(ctx.spec.stages) if i != position]
    if not rest:
        return ctx.spec.baseline_spec().run_id
    spec = copy.copy(ctx.spec)
    spec.stages = rest
    spec.method = spec.label = "+".join(s["method"] for s in rest)
    return spec.run_id


def _student_origin(ctx, position: int, fresh: bool) -> str:
    if not fresh:
        return "compressed model"  # fine-tuned, not trained from scratch
    if position == 0:
        return "scratch"
    return "built by " + "+".join(s["method"] for s in ctx.spec.stages[:position])


def student_schedule(ctx, fresh: bool) -> tuple[int, float]:
    """(epochs, lr) the runner trains the student with: the baseline's schedule for a
    fresh student, the fine-tuning schedule for a compressed model."""
    if fresh:
        return ctx.budget.epochs, ctx.budget.lr
    return ctx.budget.finetune_epochs, ctx.budget.lr * ctx.budget.finetune_lr_scale


def record_schedule(ctx, method: Method, fresh: bool, position: int) -> None:
    epochs, lr = student_schedule(ctx, fresh)
    ctx.extras["student_training"] = {"trained_by": method.name, "epochs": epochs, "lr": lr,
                                      "init": _student_origin(ctx, position, fresh)}


# -- probing a model's structure --------------------------------------------------------------


def first_tensor(x: Any) -> torch.Tensor | None:
    """A module's main output: the tensor itself, or the first tensor of a tuple/list."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)):
        return next((t for t in x if isinstance(t, torch.Tensor)), None)
    return None


@dataclass
class Probe:
    """One eval-mode forward pass on zeros: the order modules start in, and shapes."""

    order: list[str]  # module names by first call
    out_shape: dict[str, tuple[int, ...] | None]  # main output shape (None: not a tensor)
    in_shape: dict[str, tuple[int, ...] | None]

    def ran(self, name: str) -> bool:
        return name in self.out_shape

    def spatial(self, name: str) -> int | None:
        s = self.out_shape.get(name)
        return s[-2] * s[-1] if s is not None and len(s) == 4 else None


def probe(model: nn.Module, input_shape: Sequence[int]) -> Probe:
    order: list[str] = []
    out_shape: dict[str, tuple[int, ...] | None] = {}
    in_shape: dict[str, tuple[int, ...] | None] = {}

    def pre(name, module, args):
        if name not in in_shape:
            order.append(name)
            t = first_tensor(args)
            in_shape[name] = tuple(t.shape) if t is not None else None

    def post(name, module, args, output):
        t = first_tensor(output)
        out_shape[name] = tuple(t.shape) if t is not None else None

    handles = []
    for name, m in model.named_modules():
        if name:
            handles.append(m.register_forward_pre_hook(lambda mod, a, n=name: pre(n, mod, a)))
            handles.append(m.register_forward_hook(lambda mod, a, o, n=name: post(n, mod, a, o)))
    was_training = model.training
    device = next(itertools.chain(model.parameters(), [torch.empty(0)])).device
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(tuple(input_shape), device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return Probe(order, out_shape, in_shape)


# -- layer sets -------------------------------------------------------------------------------

LAYER_SETS = ("all", "atrous", "output", "stages")
_ENCODER_NAMES = ("encoder", "backbone")


@dataclass(frozen=True)
class TapPoint:
    """A captured activation: the output of module `module`, or its input (`where`)."""

    module: str
    where: str = "output"  # output | input

    def __str__(self) -> str:
        return self.module if self.where == "output" else f"{self.module}(input)"


def validate_layers(layers: Any, setting: str = "layers") -> None:
    ok = isinstance(layers, str) and layers in LAYER_SETS
    ok = ok or (isinstance(layers, list) and layers and all(isinstance(x, str) for x in layers))
    if not ok:
        raise UnknownNameError(
            f"unknown {setting} {layers!r}; valid choices: {', '.join(LAYER_SETS)}, "
            f"or a JSON list of module names"
        )


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def _is_dilated(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and max(m.dilation) > 1


def find_aspp(model: nn.Module) -> str | None:
    """The outermost module whose class name contains "ASPP" and that holds at least two
    dilated convolutions (DeepLab's pyramid; LR-ASPP, which has none, does not count)."""
    for name, m in model.named_modules():
        cls = type(m).__name__.lower()
        if "aspp" in cls and "lraspp" not in cls and sum(map(_is_dilated, m.modules())) >= 2:
            return name
    return None


def find_encoder(model: nn.Module) -> str | None:
    """The outermost module named `encoder` or `backbone`, if the model has one."""
    for name, _ in model.named_modules():
        if name.rsplit(".", 1)[-1] in _ENCODER_NAMES:
            return name
    return None


def _under(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def atrous_points(model: nn.Module, pr: Probe) -> list[TapPoint]:
    """Each atrous branch: for every dilated convolution (inside the ASPP when the model
    has one, else anywhere), the largest module that runs in forward and holds no other
    dilated convolution: ASPP's `ASPPConv` branches, ENet's dilated bottlenecks."""
    scope = find_aspp(model) or ""
    mods = dict(model.named_modules())
    dilated = [n for n, m in mods.items() if n and _under(n, scope) and _is_dilated(m)]
    points: list[str] = []
    for d in dilated:
        parts = d.split(".")
        for k in range(1, len(parts) + 1):
            cand = ".".join(parts[:k])
            if not _under(cand, scope) or cand == scope:
                continue
            if pr.ran(cand) and pr.spatial(cand) and sum(_under(x, cand) for x in dilated) == 1:
                points.append(cand)
                break
    return [TapPoint(n) for n in sorted(set(points), key=pr.order.index)]


def classifier_name(model: nn.Module, pr: Probe, num_classes: int) -> str:
    """The last convolution to run that maps features to `num_classes` channels."""
    found = None
    for name in pr.order:
        m = model.get_submodule(name)
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.out_channels == num_classes \
                and m.in_channels != num_classes:
            found = name
    if found is None:
        raise ValueError(f"no convolution of {type(model).__name__} maps features to the "
                         f"{num_classes} classes; cannot locate its decoder output")
    return found


def output_point(model: nn.Module, pr: Probe, num_classes: int) -> TapPoint:
    """The decoder's (ASPP's, for DeepLabV3) output: the input of the final classifier."""
    return TapPoint(classifier_name(model, pr, num_classes), "input")


def _units(model: nn.Module, pr: Probe) -> list[str]:
    """The model's building blocks in forward order: top-level children under single-child
    wrappers (PadCrop, OutOnly), with containers, encoders/backbones and modules that do
    not return a feature map opened one level; parameter-free modules dropped."""
    prefix, m = "", model
    while len(list(m.children())) == 1:
        cname, m = next(iter(m.named_children()))
        prefix = f"{prefix}.{cname}" if prefix else cname
    units: list[str] = []

    def walk(pfx: str, mod: nn.Module) -> None:
        for cname, child in mod.named_children():
            name = f"{pfx}.{cname}" if pfx else cname
            opens = isinstance(child, (nn.ModuleList, nn.ModuleDict)) or cname in _ENCODER_NAMES
            opens = opens or (pr.ran(name) and pr.spatial(name) is None)
            if opens and any(True for _ in child.children()):
                walk(name, child)
            elif pr.ran(name) and pr.spatial(name) and _has_params(child):
                units.append(name)

    walk(prefix, m)
    return sorted(units, key=pr.order.index)


def stage_points(model: nn.Module, pr: Probe, num_classes: int) -> list[TapPoint]:
    """Encoder stage outputs: up to the deepest (lowest-resolution) building block, the
    last block at each resolution; blocks that output class scores are not stages."""
    units = [u for u in _units(model, pr) if pr.out_shape[u][1] != num_classes]
    if not units:
        return []
    sizes = [pr.spatial(u) for u in units]
    deepest = max(i for i, s in enumerate(sizes) if s == min(sizes))
    return [TapPoint(units[i]) for i in range(deepest + 1)
            if i == deepest or sizes[i + 1] != sizes[i]]


def point_channels(model: nn.Module, points: Sequence[TapPoint],
                   input_shape: Sequence[int]) -> list[int]:
    """Channel count of the activation at each point (one probe forward)."""
    pr = probe(model, input_shape)
    shapes = [(pr.in_shape if p.where == "input" else pr.out_shape).get(p.module)
              for p in points]
    if any(s is None or len(s) != 4 for s in shapes):
        raise ValueError(f"not every point of {[str(p) for p in points]} is a feature map")
    return [s[1] for s in shapes]


def select_points(model: nn.Module, layers: str | list[str], num_classes: int,
                  input_shape: Sequence[int]) -> list[TapPoint]:
    """The activations a layer set names on `model`.

    `output`: the decoder output (input of the final classifier). `atrous`: each atrous
    branch of the ASPP, or where a model has no ASPP each block around a dilated
    convolution; `NotApplicable` if it has neither. `stages`: the encoder stage outputs. `all`:
    atrous + output for models with an ASPP (DeepLabV3/V3+), stages + output otherwise.
    A list: those module names (their outputs).
    """
    validate_layers(layers)
    mods = dict(model.named_modules())
    if isinstance(layers, list):
        bad = [n for n in layers if n not in mods or not n]
        if bad:
            raise UnknownNameError(f"{type(model).__name__} has no module(s) {', '.join(bad)}")
        return [TapPoint(n) for n in layers]
    pr = probe(model, input_shape)
    if layers == "output":
        return [output_point(model, pr, num_classes)]
    if layers == "atrous":
        pts = atrous_points(model, pr)
        if not pts:
            raise NotApplicable(
                "layer set 'atrous' needs an ASPP or dilated convolutions and this model "
                "has neither; valid layer sets for it: output, stages, all"
            )
        return pts
    if layers == "stages":
        return stage_points(model, pr, num_classes)
    if find_aspp(model) is not None:
        return [*atrous_points(model, pr), output_point(model, pr, num_classes)]
    return [*stage_points(model, pr, num_classes), output_point(model, pr, num_classes)]


# -- feature hooks --------------------------------------------------------------------------


class FeatureTap:
    """Forward hooks that keep a copy of the activations at `points` for the next loss.

    Copies (not references), so a later in-place op cannot change what was captured.
    With `only_training`, nothing is kept while the module is in eval mode (the student
    outside its training loop)."""

    def __init__(self, model: nn.Module, points: Sequence[TapPoint], only_training: bool = False):
        self.points = list(points)
        self.only_training = only_training
        self.features: dict[TapPoint, torch.Tensor] = {}
        self._handles = []
        for p in self.points:
            m = model.get_submodule(p.module)
            if p.where == "input":
                h = m.register_forward_pre_hook(lambda mod, a, p=p: self._keep(mod, p, a))
            else:
                h = m.register_forward_hook(lambda mod, a, o, p=p: self._keep(mod, p, o))
            self._handles.append(h)

    def _keep(self, module: nn.Module, point: TapPoint, value: Any) -> None:
        if self.only_training and not module.training:
            return
        t = first_tensor(value)
        if t is not None:
            self.features[point] = t.clone()

    def take(self) -> list[torch.Tensor]:
        """The captured activations in `points` order; clears them for the next step."""
        missing = [str(p) for p in self.points if p not in self.features]
        if missing:
            raise RuntimeError(f"no activation was captured at {', '.join(missing)}")
        out = [self.features[p] for p in self.points]
        self.features.clear()
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.features.clear()


def resize_like(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """`t` bilinearly resized to `ref`'s spatial size (unchanged when it already fits)."""
    if t.shape[-2:] == ref.shape[-2:]:
        return t
    return nn.functional.interpolate(t, size=ref.shape[-2:], mode="bilinear",
                                     align_corners=False)


# -- the base class of kd, at, cwd -------------------------------------------------------------

ADAPTERS = "distill_adapters"  # student submodule name of trainable adapters (never exported)


class DistillMethod(Method):
    """A teacher, optional feature taps on student and teacher, and a loss that combines
    the task loss with a distillation term. Subclasses define `combine`, and where they
    read features `tap_points` and `make_adapters` (default: none)."""

    trains_student: ClassVar[bool] = True

    def __init__(self, config: Any | None = None):
        super().__init__(config)
        validate_teacher(self.config.teacher, self.config.teacher_kwargs)
        self.validate()
        self._teacher: nn.Module | None = None
        self._taps: tuple[FeatureTap, FeatureTap] | None = None
        self._fresh = False
        self._sums: dict[str, float] = defaultdict(float)
        self._steps = 0

    # -- for subclasses -------------------------------------------------------------------
    def validate(self) -> None:
        """Raise on a bad config (runs when the grid is built, before any training)."""

    def tap_points(self, student: nn.Module, teacher: nn.Module,
                   ctx) -> tuple[list[TapPoint], list[TapPoint]]:
        """Activations to capture on (student, teacher), paired by position."""
        return [], []

    def make_adapters(self, student: nn.Module, teacher: nn.Module, ctx) -> nn.ModuleDict | None:
        """Trainable modules that map student activations to the teacher's (or None)."""
        return None

    def combine(self, ctx, student: nn.Module, targets: torch.Tensor, logits: torch.Tensor,
                task_loss: torch.Tensor, teacher_logits: torch.Tensor,
                student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor],
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total loss, named terms for the record)."""
        raise NotImplementedError

    # -- the Method hooks -----------------------------------------------------------------
    def compress(self, model: nn.Module, ctx) -> nn.Module:
        check_single_distiller(ctx)
        pos = stage_position(ctx, self.name)
        fresh = starts_fresh(ctx, pos)
        student = ctx.build_model() if fresh and pos == 0 else model
        student.to(ctx.device)
        self._teacher = load_teacher(ctx, self.config)
        s_pts, t_pts = self.tap_points(student, self._teacher, ctx)
        if len(s_pts) != len(t_pts):
            raise ValueError(
                f"{self.name}: the student has {len(s_pts)} layers in this set and the teacher "
                f"{len(t_pts)}; pair them explicitly or use layers=output"
            )
        if s_pts:
            self._taps = (FeatureTap(student, s_pts, only_training=True),
                          FeatureTap(self._teacher, t_pts))
        adapters = self.make_adapters(student, self._teacher, ctx)
        if adapters is not None:
            student.add_module(ADAPTERS, adapters.to(ctx.device))
        self._fresh = fresh
        record_schedule(ctx, self, fresh, pos)
        ctx.extras["distill"] = {
            "method": self.name,
            "student_layers": [str(p) for p in s_pts],
            "teacher_layers": [str(p) for p in t_pts],
            "undistilled_run_id": undistilled_run_id(ctx, pos),
        }
        return student

    def finetune_epochs(self, ctx) -> int:
        return student_schedule(ctx, self._fresh)[0]

    def finetune_lr(self, ctx) -> float:
        return student_schedule(ctx, self._fresh)[1]

    def baselines_needed(self, model: str, model_kwargs: dict[str, Any]
                         ) -> list[tuple[str, dict[str, Any]]]:
        name, kwargs = teacher_spec(self.config, model, model_kwargs)
        return [] if (name, kwargs) == (model, dict(model_kwargs)) else [(name, kwargs)]

    def loss(self, ctx, model, images, targets, logits, task_loss):
        if self._teacher is None:
            raise RuntimeError(f"{self.name}: loss called before compress attached a teacher")
        with torch.no_grad():
            t_logits = self._teacher(images)
        s_feats, t_feats = ([], []) if self._taps is None else \
            (self._taps[0].take(), self._taps[1].take())
        total, terms = self.combine(ctx, model, targets, logits, task_loss, t_logits,
                                    s_feats, t_feats)
        for k, v in {"task": task_loss, **terms}.items():
            self._sums[k] += float(v.detach())
        self._steps += 1
        return total

    def finalize(self, model: nn.Module, ctx) -> nn.Module:
        if self._taps is not None:
            for tap in self._taps:
                tap.remove()
            self._taps = None
        if ADAPTERS in model._modules:
            delattr(model, ADAPTERS)
        if self._steps and ctx is not None:
            ctx.extras.setdefault("distill", {})["mean_loss_terms"] = {
                k: v / self._steps for k, v in self._sums.items()}
        self._teacher = None
        return model
