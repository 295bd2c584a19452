"""`at`: attention transfer (Zagoruyko & Komodakis 2017).

For each chosen layer the attention map is f(A) = mean over channels of A^2, flattened and
L2-normalised per image; the loss adds beta * sum over layers of the mean squared
difference between the student's and the teacher's normalised maps to the task loss.
That is the authors' code (`(at(x) - at(y)).pow(2).mean()`), for which beta = 1000 was
tuned; the paper's eq. 2 writes the same distance as a norm. Where resolutions differ, the
teacher's map is resized bilinearly to the student's before normalising.

Layer sets (`--set layers=...`): `output` (the decoder/ASPP output: the final classifier's
input), `atrous` (each atrous branch of DeepLab's ASPP; in a model without ASPP, each
block around a dilated convolution, e.g. ENet's dilated bottlenecks; a model with neither,
such as U-Net, fails with a message), `stages` (encoder stage outputs), `all` (atrous +
output for DeepLab, stages + output for the others), or a JSON list of module names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from bench.config import setting
from bench.method import register_method
from methods.distill.layers import attention_map, resize_like, select_points, validate_layers
from methods.distill.method import DistillMethod, TeacherConfig

NORM_EPS = 1e-12  # F.normalize's default: a map with a smaller norm is a dead layer


def at_distance(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the L2-normalised attention maps (teacher resized).

    An image whose teacher map is dead contributes nothing: there is no attention to
    transfer, and its term would be a constant 1/HW with no gradient, inflating the
    reported loss. Dead means a norm below `F.normalize`'s eps, which normalises the map
    to (almost) zero: U-Net-small's trained bottleneck is one, with activations of
    about 1e-18 (so maps of 1e-36), not exact zeros."""
    s_map = attention_map(student_feat)
    s = s_map.flatten(1)
    t = resize_like(attention_map(teacher_feat), s_map).flatten(1)
    t_norm = t.norm(dim=1, keepdim=True)  # once: it normalises t and tells dead from live
    per_image = (F.normalize(s, dim=1, eps=NORM_EPS)
                 - t / t_norm.clamp_min(NORM_EPS)).pow(2).mean(1)
    live = (t_norm.squeeze(1) > NORM_EPS).to(per_image.dtype)
    return (per_image * live).mean()


@register_method("at", family="distill")
class AttentionTransfer(DistillMethod):
    version = 1
    sweep = [{"layers": "output"}, {"layers": "atrous"}, {"layers": "all"}]

    @dataclass
    class Config(TeacherConfig):
        layers: Any = "all"  # all | atrous | output | stages | [module names]
        beta: float = setting(1000.0, ge=0.0)

        def __post_init__(self) -> None:
            super().__post_init__()
            validate_layers(self.layers)

    def tap_points(self, student, teacher, ctx):
        def pts(m):
            return select_points(m, self.config.layers, ctx.num_classes, ctx.input_shape)

        return pts(student), pts(teacher)

    def combine(self, ctx, student, targets, logits, task_loss, teacher_logits,
                student_feats, teacher_feats):
        at = sum(at_distance(s, t) for s, t in zip(student_feats, teacher_feats))
        return task_loss + self.config.beta * at, {"at": at}
