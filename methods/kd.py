"""`kd`: knowledge distillation (Hinton, Vinyals, Dean 2015), per pixel.

    L = (1 - alpha) * CE(y, s) + 2 * alpha * T^2 * KL(softmax(t / T) || softmax(s / T))

with the defaults alpha = 0.9, T = 4 of the DeepLabV3+ compression report, taken from
Moonshine (Crowley et al. 2019), whose code weights the soft term by 2 * alpha * T^2. The
soft term is the KL divergence, i.e. the cross-entropy CE(softmax(t/T), softmax(s/T)) minus
the teacher's entropy: the same gradient, and zero when student and teacher agree. It is
summed over classes and averaged over pixels (all pixels: the teacher has an opinion on
ignored ones too). Teacher logits of another resolution are resized bilinearly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.config import setting
from bench.method import register_method
from methods.distill.layers import resize_like
from methods.distill.method import DistillMethod, TeacherConfig


def kd_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                  temperature: float) -> torch.Tensor:
    """Mean over pixels of KL(softmax(t/T) || softmax(s/T)) over the class dimension."""
    t = resize_like(teacher_logits.float(), student_logits)
    log_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_t = F.log_softmax(t / temperature, dim=1)
    return (log_t.exp() * (log_t - log_s)).sum(1).mean()


@register_method("kd", family="distill")
class KnowledgeDistillation(DistillMethod):
    version = 1

    @dataclass
    class Config(TeacherConfig):
        alpha: float = setting(0.9, ge=0.0, le=1.0)  # weight of the soft (teacher) term
        temperature: float = setting(4.0, gt=0.0)

    def combine(self, ctx, student, targets, logits, task_loss, teacher_logits,
                student_feats, teacher_feats):
        a, T = self.config.alpha, self.config.temperature
        kl = kd_divergence(logits, teacher_logits, T)
        return (1 - a) * task_loss + 2 * a * T * T * kl, {"kd_kl": kl}
