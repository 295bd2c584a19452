"""What the distillation methods (`kd`, `at`, `cwd`) and the student builder (`cheapconv`)
share: the frozen teacher, where a stage sits in its pipeline, training the student, and
the `DistillMethod` base class. Where features are read from (layer sets, forward hooks)
is methods/distill/layers.py.

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
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.config import ConfigError, Settings, setting
from bench.facts import Distill, DistillLoss, StudentTraining, Teacher
from bench.method import METHODS, Method
from methods.distill.layers import FeatureTap, TapPoint

# -- teacher ------------------------------------------------------------------------------


@dataclass
class TeacherConfig(Settings):
    """The settings every distillation method shares (its Config subclasses this)."""

    teacher: str = ""  # zoo model of the teacher; "" = the student's own model
    teacher_kwargs: dict = setting({})  # its model kwargs ({}: as the run's)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.teacher:
            from models import MODELS

            if self.teacher not in MODELS:
                raise ConfigError("teacher", self.teacher, '"" (the run\'s own model) or '
                                  "a zoo model: " + ", ".join(MODELS.names()))


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
    validation split; who it is and what it cost go to the record (`facts.Teacher`)."""
    name, kwargs = teacher_spec(config, ctx.spec.model, ctx.spec.model_kwargs)
    teacher, info = ctx.baseline(name, **kwargs)
    freeze(teacher)
    scores = ctx.evaluate(teacher, desc=f"eval teacher {name}")
    train = info.get("train", {})
    ctx.report(Teacher(model=name, model_kwargs=kwargs, run_id=info.get("run_id"),
                       train_seconds=train.get("seconds"), train_steps=train.get("steps"),
                       trained_now=info.get("trained_now"), miou=scores["miou"]))
    return teacher


# -- pipeline position ----------------------------------------------------------------------


def stage_position(ctx, name: str) -> int:
    """Index of stage `name` in the run's pipeline (where it must appear exactly once)."""
    names = [s["method"] for s in ctx.spec.stages]
    if names.count(name) != 1:
        raise ValueError(f"stage {name!r} must appear exactly once in pipeline {ctx.spec.method!r}")
    return names.index(name)


def starts_fresh(ctx, position: int) -> bool:
    """True when every stage before `position` builds a fresh student (or there is none):
    the model reaching `position` is untrained and must get the full training schedule."""
    return all(METHODS.get(s["method"]).builds_student for s in ctx.spec.stages[:position])


def later_stage_trains(ctx, position: int) -> bool:
    """True when a stage after `position` trains the student itself (a distiller)."""
    return any(METHODS.get(s["method"]).trains_student for s in ctx.spec.stages[position + 1 :])


def check_single_distiller(ctx) -> None:
    names = [s["method"] for s in ctx.spec.stages if METHODS.get(s["method"]).trains_student]
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


def record_schedule(ctx, method: Method, fresh: bool, position: int,
                    init: str | None = None) -> None:
    """Report how the student is trained; `init` overrides where it starts from."""
    epochs, lr = student_schedule(ctx, fresh)
    ctx.report(StudentTraining(trained_by=method.name, epochs=epochs, lr=lr,
                               init=init or _student_origin(ctx, position, fresh)))


# -- the base class of kd, at, cwd -------------------------------------------------------------

ADAPTERS = "distill_adapters"  # student submodule name of trainable adapters (never exported)


class DistillMethod(Method):
    """A teacher, optional feature taps on student and teacher, and a loss that combines
    the task loss with a distillation term. Subclasses define `combine`, and where they
    read features `tap_points` and `make_adapters` (default: none)."""

    trains_student = True

    def __init__(self, config: Any | None = None):
        super().__init__(config)
        self._teacher: nn.Module | None = None
        self._taps: tuple[FeatureTap, FeatureTap] | None = None
        self._fresh = False
        self._sums: dict[str, float] = defaultdict(float)
        self._steps = 0

    # -- for subclasses -------------------------------------------------------------------
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
    def compress(self, ctx, model: nn.Module) -> nn.Module:
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
        ctx.report(Distill(method=self.name, student_layers=[str(p) for p in s_pts],
                           teacher_layers=[str(p) for p in t_pts],
                           undistilled_run_id=undistilled_run_id(ctx, pos)))
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

    def finalize(self, ctx, model: nn.Module) -> nn.Module:
        if self._taps is not None:
            for tap in self._taps:
                tap.remove()
            self._taps = None
        if ADAPTERS in model._modules:
            delattr(model, ADAPTERS)
        if self._steps:
            ctx.report(DistillLoss({k: v / self._steps for k, v in self._sums.items()}))
        self._teacher = None
        return model
