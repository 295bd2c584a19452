"""`kd`: the loss, the teacher's treatment, and that the student is trained exactly like
the baseline except for the loss (so the `none` row is the undistilled student).

The tests of the distillation plugins share one results directory per session
(`shared_results`) so the tiny enet baseline is trained once."""

import pytest
import torch
import torch.nn.functional as F

from bench.config import ConfigError
from bench.context import RunContext
from bench.method import METHODS, Stage
from bench.runner import run_one
from methods.kd import kd_divergence

CPU = torch.device("cpu")


def test_kd_term_is_zero_when_student_equals_teacher_so_only_ce_remains():
    torch.manual_seed(0)
    logits = torch.randn(2, 9, 6, 5)
    target = torch.randint(0, 9, (2, 6, 5))
    assert kd_divergence(logits, logits.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)
    kd = METHODS.get("kd")()
    ce = F.cross_entropy(logits, target)
    total, _ = kd.combine(None, None, target, logits, ce, logits.clone(), [], [])
    assert total.item() == pytest.approx(0.1 * ce.item(), rel=1e-5)  # (1 - alpha) * CE
    assert kd_divergence(logits, logits + torch.randn_like(logits), 4.0).item() > 1e-4


def test_kd_gradient_pulls_the_student_toward_the_teachers_class():
    student = torch.zeros(1, 3, 1, 1, requires_grad=True)  # uniform
    teacher = torch.tensor([5.0, 0.0, 0.0]).view(1, 3, 1, 1)  # sure of class 0
    kd_divergence(student, teacher, 4.0).backward()
    g = student.grad.flatten()
    assert g[0] < 0 and g[1] > 0 and g[2] > 0  # descent raises class 0, lowers the others


def test_kd_resizes_a_teacher_of_another_resolution():
    torch.manual_seed(0)
    per_class = torch.randn(1, 9, 1, 1)
    student = per_class.expand(2, 9, 8, 8).contiguous()
    teacher = per_class.expand(2, 9, 4, 4).contiguous()  # half resolution, same scores
    assert kd_divergence(student, teacher, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_divergence(student, -teacher, 4.0).item() > 1e-3


def test_kd_rejects_bad_settings_when_the_grid_is_built(make_spec):
    with pytest.raises(ConfigError, match=r"'kd'.*alpha=1.5; valid: a number in \[0, 1\]"):
        make_spec("kd", alpha=1.5)
    with pytest.raises(ConfigError, match="teacher='no_such_model'; valid: .*enet"):
        make_spec("kd", teacher="no_such_model")


def test_frozen_teacher_and_a_student_identical_to_the_baseline_without_soft_term(
        make_spec, shared_results):
    """With alpha = 0 only CE is left, so the student must come out bit-identical to the
    `none` baseline: the comparison differs in the loss and nothing else. Meanwhile the
    teacher stays frozen, unchanged, and outside the student."""
    ctx = RunContext(make_spec("kd", "enet", alpha=0.0), device=CPU, results=shared_results)
    kd = METHODS.get("kd")(METHODS.get("kd").Config(alpha=0.0))
    base, info = ctx.baseline()
    student = kd.compress(ctx, ctx.baseline()[0])  # a fresh student and the teacher
    assert (kd.finetune_epochs(ctx), kd.finetune_lr(ctx)) == (ctx.budget.epochs, ctx.budget.lr)
    ctx.train(student, kd.finetune_epochs(ctx), kd.finetune_lr(ctx), [Stage(kd)])  # as the runner
    teacher = kd._teacher
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    for k, v in base.state_dict().items():  # weights and BN statistics untouched
        assert torch.equal(teacher.state_dict()[k], v), k
    assert ctx.extras["teacher"]["run_id"] == info["run_id"] == ctx.spec.baseline_spec().run_id
    assert ctx.extras["teacher"]["model"] == "enet"
    assert ctx.extras["teacher"]["train_seconds"] > 0
    assert ctx.extras["student_training"]["init"] == "scratch"
    kd.finalize(ctx, student)
    assert kd._teacher is None
    assert set(student.state_dict()) == set(base.state_dict())
    for k, v in base.state_dict().items():
        assert torch.equal(student.state_dict()[k], v), k


def test_kd_after_another_stage_fine_tunes_that_model(make_spec, shared_results):
    spec = make_spec("none+kd", "enet")
    b = spec.budget
    rec = run_one(spec, results=shared_results, device=CPU)
    assert rec["status"] == "ok", rec.get("error")
    ex = rec["extras"]
    assert ex["student_training"] == {"trained_by": "kd", "init": "compressed model",
                                      "epochs": b.finetune_epochs,
                                      "lr": b.lr * b.finetune_lr_scale}  # fine-tuning schedule
    assert rec["timings"]["finetune_s"] > 0
    assert ex["teacher"]["run_id"] == rec["baseline_run_id"]
    assert ex["distill"]["undistilled_run_id"] == rec["baseline_run_id"]
    assert set(ex["distill"]["mean_loss_terms"]) == {"task", "kd_kl"}
