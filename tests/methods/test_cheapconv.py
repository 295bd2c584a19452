"""`cheapconv`: the blocks keep the replaced convolution's geometry, the scopes pick the
right part of the model, the artifact rebuilds the student, and `cheapconv+at` hands the
training to the distiller."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bench.config import ConfigError
from bench.method import METHODS, NotApplicable, expand_methods
from bench.runner import run_one
from bench.spec import RunSpec
from bench.verify import verify_record
from methods.cheapconv import BLOCKS, CheapConvBlock, cheap_block, scope_convs
from models import create_model

CPU = torch.device("cpu")
SHAPE = (1, 3, 64, 64)


@pytest.mark.parametrize("kind", BLOCKS)
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 4)])
def test_blocks_keep_the_geometry_and_cost_less(kind, stride, dilation):
    conv = nn.Conv2d(32, 48, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
    block = cheap_block(conv, kind, groups=4, bottleneck=2)
    x = torch.randn(2, 32, 17, 20)
    assert block(x).shape == conv(x).shape
    assert sum(p.numel() for p in block.parameters()) < conv.weight.numel()
    spatial = block.spatial
    assert spatial.stride == conv.stride and spatial.dilation == conv.dilation
    assert spatial.groups == {"separable": 32, "grouped": 4, "bottleneck": 1}[kind]


def test_scopes_on_unet_deeplab_and_enet():
    unet = create_model("unet_small", num_classes=9)
    every = scope_convs(unet, "all", SHAPE)
    head = scope_convs(unet, "head", SHAPE)
    assert "net.inc.0" not in every  # the RGB stem stays
    assert head and all(n.startswith("net.up.") for n in head)
    assert set(head) < set(every)
    assert scope_convs(unet, "decoder", SHAPE) == head  # no ASPP between encoder and decoder
    deeplab = create_model("deeplabv3plus_mobilenetv2", num_classes=9)
    head = scope_convs(deeplab, "head", SHAPE)  # ASPP branches and the decoder, no backbone
    assert head == ["head.aspp.convs.1.0", "head.aspp.convs.2.0", "head.aspp.convs.3.0",
                    "head.classifier.0"]
    assert scope_convs(deeplab, "decoder", SHAPE) == ["head.classifier.0"]
    ksac = create_model("deeplabv3plus_mobilenetv2", num_classes=9, ksac=True)
    assert scope_convs(ksac, "head", SHAPE) == ["head.classifier.0"]  # shared kernels stay
    enet = create_model("enet", num_classes=9)
    assert scope_convs(enet, "decoder", SHAPE) == [
        "net.stage4.0.branch.1.0", "net.stage4.1.branch.1.0", "net.stage5.branch.1.0"]


def test_a_scope_without_3x3_convolutions_is_not_applicable():
    """Nothing to replace is a property of the model, recorded as "not applicable"."""
    pointwise = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 9, 1))
    ctx = SimpleNamespace(device=CPU, input_shape=SHAPE, spec=SimpleNamespace(model="tiny"),
                          build_model=lambda: pointwise)
    cls = METHODS.get("cheapconv")
    with pytest.raises(NotApplicable, match="scope 'all' of tiny holds no eligible 3x3"):
        cls(cls.Config(scope="all")).compress(ctx, pointwise)


def test_bad_block_is_rejected_with_the_choices(make_spec):
    with pytest.raises(ConfigError, match="valid: one of bottleneck, grouped, separable"):
        make_spec("cheapconv", block="ghost")


def test_cheapconv_student_is_smaller_and_its_artifact_verifies(make_spec, shared_results):
    rec = run_one(make_spec("cheapconv", "enet"), results=shared_results, device=CPU)
    assert rec["status"] == "ok", rec.get("error")
    ex = rec["extras"]
    assert ex["cheapconv"]["replaced"] == 21
    assert ex["cheapconv"]["params_blocks"] < ex["cheapconv"]["params_replaced"]
    assert ex["student_training"]["trained_by"] == "cheapconv"
    assert ex["student_training"]["init"] == "scratch" and rec["timings"]["finetune_s"] > 0
    enet = create_model("enet", num_classes=9)
    removed = ex["cheapconv"]["params_replaced"] - ex["cheapconv"]["params_blocks"]
    assert rec["metrics"]["params"] == sum(p.numel() for p in enet.parameters()) - removed
    assert verify_record(rec, shared_results) == []  # rebuilds, check() passes, exact mIoU


def test_cheapconv_then_at_trains_once_with_the_teacher(make_spec, shared_results):
    spec = make_spec("cheapconv+at", "enet", layers="output")
    rec = run_one(spec, results=shared_results, device=CPU)
    assert rec["status"] == "ok", rec.get("error")
    ex = rec["extras"]
    assert ex["student_training"]["trained_by"] == "at"  # cheapconv left the training to it
    assert ex["student_training"]["init"] == "built by cheapconv"
    assert (ex["student_training"]["epochs"], ex["student_training"]["lr"]) == \
        (spec.budget.epochs, spec.budget.lr)  # the baseline's schedule
    log = shared_results / "logs"
    assert not (log / f"{rec['run_id']}-cheapconv.csv").exists()  # one training, by `at`
    epochs_logged = len((log / f"{rec['run_id']}-at.csv").read_text().splitlines()) - 1
    assert epochs_logged == spec.budget.epochs
    (alone,) = expand_methods("cheapconv")
    undistilled = RunSpec(model="enet", method="cheapconv", label="cheapconv",
                          stages=alone.resolved(), dataset=spec.dataset, budget=spec.budget,
                          seed=0)
    assert ex["distill"]["undistilled_run_id"] == undistilled.run_id
    assert ex["teacher"]["run_id"] == rec["baseline_run_id"]
    assert verify_record(rec, shared_results) == []


def test_rebuild_recreates_the_blocks_by_name():
    from methods.cheapconv import CheapConvolutions

    stage = CheapConvolutions(CheapConvolutions.Config(block="bottleneck", scope="decoder"))
    enet = create_model("enet", num_classes=9)
    names = scope_convs(enet, "decoder", SHAPE)
    stage.rebuild(enet, {"replaced": names})
    assert stage.artifact_meta(enet) == {"replaced": names}
    assert all(isinstance(enet.get_submodule(n), CheapConvBlock) for n in names)
    assert stage.check(enet, {"replaced": names}) == []
    other = CheapConvolutions(CheapConvolutions.Config(block="separable"))
    assert other.check(enet, {"replaced": names})  # a block of the wrong kind is reported
