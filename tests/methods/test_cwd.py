"""`cwd`: the channel-wise divergence, feature adapters that never reach the artifact, and
a teacher that is another zoo model."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.method import METHODS
from bench.runner import run_one
from methods.cwd import cwd_divergence
from methods.distill.method import ADAPTERS
from models import create_model

CPU = torch.device("cpu")


class TwoConv(nn.Module):
    def __init__(self, width, num_classes=9):
        super().__init__()
        self.features = nn.Conv2d(3, width, 3, padding=1)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, x):
        return self.classifier(self.features(x).relu())


def test_cwd_is_zero_when_student_equals_teacher_so_only_ce_remains():
    torch.manual_seed(0)
    logits = torch.randn(2, 9, 6, 5)
    target = torch.randint(0, 9, (2, 6, 5))
    assert cwd_divergence(logits, logits.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)
    cwd = METHODS.get("cwd")()
    ce = F.cross_entropy(logits, target)
    total, _ = cwd.combine(None, None, target, logits, ce, logits.clone(), [], [])
    assert total.item() == pytest.approx(ce.item(), rel=1e-5)
    assert cwd_divergence(logits, logits + torch.randn_like(logits), 4.0).item() > 1e-4


def test_cwd_gradient_moves_each_channels_mass_to_where_the_teacher_puts_it():
    teacher = torch.zeros(1, 2, 3, 3)
    teacher[0, 0, 0, 0] = 8.0  # channel 0 peaks top-left
    teacher[0, 1, 2, 2] = 8.0  # channel 1 peaks bottom-right
    student = torch.zeros(1, 2, 3, 3, requires_grad=True)
    cwd_divergence(student, teacher, 1.0).backward()
    g = student.grad
    assert g[0, 0, 0, 0] < 0 and g[0, 0, 2, 2] > 0
    assert g[0, 1, 2, 2] < 0 and g[0, 1, 0, 0] > 0


def test_cwd_resizes_a_teacher_of_another_resolution():
    per_channel = torch.randn(1, 9, 1, 1)
    student = per_channel.expand(2, 9, 8, 8).contiguous()
    teacher = per_channel.expand(2, 9, 4, 4).contiguous()
    assert cwd_divergence(student, teacher, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    teacher = teacher.clone()
    teacher[..., :2, :] += 3.0
    assert cwd_divergence(student, teacher, 4.0).item() > 1e-3


def test_feature_adapter_maps_student_channels_and_is_removed_before_export():
    cwd = METHODS.get("cwd")(METHODS.get("cwd").Config(feature="output"))
    ctx = SimpleNamespace(num_classes=9, input_shape=(1, 3, 16, 16), extras={})
    student, teacher = TwoConv(4), TwoConv(12)
    adapters = cwd.make_adapters(student, teacher, ctx)
    assert list(adapters) == ["0"]
    assert (adapters["0"].in_channels, adapters["0"].out_channels) == (4, 12)
    student.add_module(ADAPTERS, adapters)
    x = torch.randn(2, 3, 16, 16)
    s_feat, t_feat = student.features(x), teacher.features(x)
    logits = student(x)
    total, terms = cwd.combine(ctx, student, None, logits, torch.tensor(0.0), teacher(x),
                               [s_feat], [t_feat])
    total.backward()
    assert terms["cwd_features"] > 0 and adapters["0"].weight.grad is not None
    cwd.finalize(ctx, student)
    assert not any(k.startswith(ADAPTERS) for k in student.state_dict())
    assert cwd.make_adapters(student, TwoConv(4), ctx) is None  # same width: no adapter


def test_cwd_with_another_zoo_model_as_teacher(make_spec, shared_results):
    cwd = METHODS.get("cwd")
    assert cwd(cwd.Config(teacher="unet_small")).baselines_needed("enet", {}) == \
        [("unet_small", {})]  # executors train the teacher first
    assert cwd().baselines_needed("enet", {}) == []  # the run's own baseline
    narrow = cwd(cwd.Config(teacher_kwargs={"base_channels": 8}))
    assert narrow.baselines_needed("unet_small", {}) == [("unet_small", {"base_channels": 8})]
    rec = run_one(make_spec("cwd", "enet", teacher="unet_small", feature="output"),
                  results=shared_results, device=CPU)
    assert rec["status"] == "ok", rec.get("error")
    teacher = rec["extras"]["teacher"]
    assert teacher["model"] == "unet_small" and teacher["model_kwargs"] == {}
    assert teacher["run_id"] != rec["baseline_run_id"] and teacher["train_seconds"] > 0
    assert 0.0 <= teacher["miou"] <= 1.0
    assert rec["extras"]["distill"]["teacher_layers"] == ["net.head(input)"]
    terms = rec["extras"]["distill"]["mean_loss_terms"]
    assert terms["cwd_logits"] > 0 and terms["cwd_features"] > 0
    enet = create_model("enet", num_classes=9)  # no adapter or teacher weight was counted
    assert rec["metrics"]["params"] == sum(p.numel() for p in enet.parameters())
