"""`cwd`: channel-wise distillation for dense prediction (Shu, Liu, Gao, Yan, Shen 2021).

Each channel of a (N, C, H, W) map is turned into a distribution over its H*W positions
by a softmax with temperature tau; the loss is the KL divergence from the teacher's to
the student's distribution, times tau^2, averaged over channels and images:

    CWD = tau^2 / (N * C) * sum_{n,c} KL(softmax(t_nc / tau) || softmax(s_nc / tau))

It asks where each class (channel) is most salient rather than what every pixel is,
which is why it suits segmentation. Applied to the logits (weight `weight`) and, with
`feature=<layer set or [module names]>`, also to feature maps (weight `feature_weight`;
a trainable 1x1 convolution maps the student's channels to the teacher's where they
differ, as in the paper, and is dropped before export). Defaults tau = 4, weight = 3:
the paper's segmentation setting (mmrazor's reproduction uses tau = 1, weight = 3).
The total is the task loss plus these terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.config import setting
from bench.method import register_method
from methods.distill.layers import point_channels, resize_like, select_points, validate_layers
from methods.distill.method import ADAPTERS, DistillMethod, TeacherConfig


def cwd_divergence(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """tau^2 * mean over (image, channel) of KL over spatial positions (teacher resized)."""
    t = resize_like(teacher.float(), student)
    n, c = student.shape[:2]
    log_s = F.log_softmax(student.float().reshape(n, c, -1) / tau, dim=2)
    log_t = F.log_softmax(t.reshape(n, c, -1) / tau, dim=2)
    return (log_t.exp() * (log_t - log_s)).sum(2).mean() * tau * tau


@register_method("cwd", family="distill")
class ChannelWiseDistillation(DistillMethod):
    version = 1

    @dataclass
    class Config(TeacherConfig):
        tau: float = setting(4.0, gt=0.0)
        weight: float = setting(3.0, ge=0.0)  # of the logit term
        feature: Any = ""  # "" (logits only) | output | stages | atrous | all | [names]
        feature_weight: float = setting(3.0, ge=0.0)

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.feature != "":
                validate_layers(self.feature, "feature")

    def tap_points(self, student, teacher, ctx):
        if self.config.feature == "":
            return [], []

        def pts(m):
            return select_points(m, self.config.feature, ctx.num_classes, ctx.input_shape)

        return pts(student), pts(teacher)

    def make_adapters(self, student, teacher, ctx):
        s_pts, t_pts = self.tap_points(student, teacher, ctx)
        if not s_pts:
            return None
        cs = point_channels(student, s_pts, ctx.input_shape)
        ct = point_channels(teacher, t_pts, ctx.input_shape)
        adapters = nn.ModuleDict({str(i): nn.Conv2d(a, b, 1) for i, (a, b) in
                                  enumerate(zip(cs, ct)) if a != b})
        return adapters or None

    def combine(self, ctx, student, targets, logits, task_loss, teacher_logits,
                student_feats, teacher_feats):
        c = self.config
        term = cwd_divergence(logits, teacher_logits, c.tau)
        total, terms = task_loss + c.weight * term, {"cwd_logits": term}
        if student_feats:
            adapters = getattr(student, ADAPTERS, None)
            feat = sum(
                cwd_divergence(adapters[str(i)](s) if adapters is not None and str(i) in
                               adapters else s, t, c.tau)
                for i, (s, t) in enumerate(zip(student_feats, teacher_feats))
            )
            total, terms["cwd_features"] = total + c.feature_weight * feat, feat
        return total, terms
