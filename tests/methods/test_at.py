"""`at`: the attention loss, the layer sets on the zoo's CPU models and on an ASPP model,
and that the hooks it installs are gone before export."""

import pytest
import torch

from bench.config import ConfigError
from bench.context import RunContext
from bench.export import export_model, load_model
from bench.method import METHODS, NotApplicable, Stage
from methods.at import at_distance
from methods.distill.layers import select_points
from models import create_model

CPU = torch.device("cpu")
SHAPE = (1, 3, 64, 64)


def test_attention_loss_is_zero_for_equal_maps_and_ignores_scale_and_channels():
    torch.manual_seed(0)
    a = torch.randn(2, 8, 5, 7)
    assert at_distance(a, a.clone()).item() == pytest.approx(0.0, abs=1e-7)
    assert at_distance(a, 3 * a).item() == pytest.approx(0.0, abs=1e-7)  # normalised maps
    wider = torch.cat([a, a], dim=1)  # same attention, twice the channels
    assert at_distance(a, wider).item() == pytest.approx(0.0, abs=1e-7)
    assert at_distance(a, torch.randn(2, 8, 5, 7)).item() > 1e-4


def test_attention_gradient_raises_the_student_where_the_teacher_attends():
    teacher = torch.ones(1, 4, 3, 3)
    teacher[:, :, 1, 1] = 5.0  # the teacher attends to the centre
    student = torch.ones(1, 4, 3, 3, requires_grad=True)
    at_distance(student, teacher).backward()
    assert (student.grad[:, :, 1, 1] < 0).all()  # descent increases the centre
    assert (student.grad[:, :, 0, 0] > 0).all()


def test_teacher_map_of_another_resolution_is_resized_to_the_students():
    student = torch.ones(2, 4, 8, 8)
    teacher = torch.full((2, 16, 4, 4), 2.0)  # uniform attention at half resolution
    assert at_distance(student, teacher).item() == pytest.approx(0.0, abs=1e-7)
    teacher[:, :, :2] = 0.0
    assert at_distance(student, teacher).item() > 1e-3


def test_a_dead_teacher_layer_transfers_nothing():
    # U-Net-small's trained bottleneck outputs zeros: its map carries no attention
    student = torch.randn(3, 8, 6, 6, requires_grad=True)
    dead = torch.zeros(3, 16, 6, 6)
    loss = at_distance(student, dead)
    loss.backward()
    assert loss.item() == 0.0 and student.grad.abs().max().item() == 0.0
    # nearly dead, as U-Net-small's bottleneck really is (activations ~1e-18, not zero)
    faint = torch.full((3, 16, 6, 6), 2e-18)
    faint[:, :, :3] = 0
    assert at_distance(student, faint).item() == 0.0
    assert at_distance(student, faint * 1e15).item() > 1e-3  # the same map, alive
    # a batch with one dead image: the live ones count as before, averaged over all
    teacher = torch.randn(3, 16, 6, 6)
    partly = teacher.clone()
    partly[1] = 0
    live_only = sum(at_distance(student[i:i + 1], teacher[i:i + 1]) for i in (0, 2)) / 3
    assert at_distance(student, partly).item() == pytest.approx(live_only.item(), rel=1e-6)


def test_layer_sets_on_enet_and_unet():
    enet = create_model("enet", num_classes=9)
    out = select_points(enet, "output", 9, SHAPE)
    assert [(p.module, p.where) for p in out] == [("net.fullconv", "input")]
    atrous = [p.module for p in select_points(enet, "atrous", 9, SHAPE)]
    assert atrous == [f"net.stage{s}.{i}" for s in (2, 3) for i in (1, 3, 5, 7)]  # dilated
    assert [p.module for p in select_points(enet, "stages", 9, SHAPE)] == \
        ["net.initial", "net.stage1", "net.stage3"]
    assert select_points(enet, "all", 9, SHAPE) == select_points(enet, "stages", 9, SHAPE) + out
    unet = create_model("unet_small", num_classes=9)
    assert [p.module for p in select_points(unet, "stages", 9, SHAPE)] == \
        ["net.inc", "net.down.0", "net.down.1", "net.down.2", "net.down.3"]
    with pytest.raises(NotApplicable, match="valid layer sets for it: output, stages, all"):
        select_points(unet, "atrous", 9, SHAPE)


def test_layer_sets_on_deeplabv3plus():
    m = create_model("deeplabv3plus_mobilenetv2", num_classes=9)
    atrous = select_points(m, "atrous", 9, SHAPE)  # the ASPP's, not the backbone's
    assert [p.module for p in atrous] == ["head.aspp.convs.1", "head.aspp.convs.2",
                                          "head.aspp.convs.3"]
    out = select_points(m, "output", 9, SHAPE)  # the decoder output the classifier reads
    assert [(p.module, p.where) for p in out] == [("head.classifier.3", "input")]
    assert select_points(m, "all", 9, SHAPE) == atrous + out


def test_bad_layer_set_is_rejected_with_the_choices(make_spec):
    with pytest.raises(ConfigError, match="valid: one of all, atrous, output, stages"):
        make_spec("at", layers="bogus")


def test_hooks_live_only_until_finalize_and_never_reach_the_artifact(make_spec, shared_results,
                                                                     tmp_path):
    spec = make_spec("at", "enet", layers="all")
    ctx = RunContext(spec, device=CPU, results=shared_results)
    at = METHODS.get("at")(METHODS.get("at").Config(layers="all"))
    student = at.compress(ctx, ctx.baseline()[0])
    ctx.train(student, at.finetune_epochs(ctx), at.finetune_lr(ctx), [Stage(at)])  # as the runner

    def hooked(m):
        return [n for n, x in m.named_modules() if x._forward_hooks or x._forward_pre_hooks]

    assert len(hooked(student)) == 4 and len(hooked(at._teacher)) == 4
    assert ctx.extras["distill"]["student_layers"] == ["net.initial", "net.stage1",
                                                      "net.stage3", "net.fullconv(input)"]
    student = at.finalize(ctx, student)
    assert hooked(student) == []
    assert ctx.extras["distill"]["mean_loss_terms"]["at"] > 0
    path = export_model(student.eval(), tmp_path / "model", model_name="enet", num_classes=9,
                        model_kwargs={}, stages=[Stage(at)], ctx=ctx)
    loaded, _, _ = load_model(path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), student(x))
