"""`pt2e_qat`: the PT2E graph holds fake-quantizers that train in the shared loop, its
conversion computes what the fake-quantized model computed, a model torch.export cannot
capture is not applicable (never a crash), and a bad setting is one line. The run end to
end, with its ExecuTorch lowering, is in tests/methods/test_conformance.py (slow)."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from bench.cli import main
from bench.context import RunContext
from bench.method import METHODS, NotApplicable, Stage, make_config
from bench.spec import RunSpec
from methods.pt2e_qat import Pt2eQAT, count_fake_quantizers, load_twin
from methods.toolkits.pt2e import capture, prepare
from models import create_model

KW = {"base_channels": 4, "depth": 2}
# the converted model (integer arithmetic emulated by quantize/dequantize ops, BatchNorm
# folded into the weights) against the fake-quantized model it came from: the same int8
# grid, so the logits differ by rounding near ties and the folding order, not by a step
# of the grid everywhere
LOGIT_TOLERANCE = 0.05  # of the largest logit
MIN_ARGMAX_AGREEMENT = 0.99
# the registry loaded at collection, as the CLI tests of test_conformance.py have it: `ptq`'s
# import (brevitas) logs torch's "No CUDA runtime" line on CUDA-less hosts the first time
assert METHODS.get("pt2e_qat") is Pt2eQAT


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    from bench.budgets import get_budget

    budget = get_budget("smoke", {"train_images": 8, "eval_images": 4, "batch_size": 4,
                                  "calibration_images": 4})
    spec = RunSpec("unet_small", "pt2e_qat", "pt2e_qat", [], "synthetic", budget, 0, dict(KW))
    return RunContext(spec, device=torch.device("cpu"),
                      results=tmp_path_factory.mktemp("pt2e_qat"))


@pytest.fixture(scope="module")
def trained(ctx):
    """A tiny U-Net through `compress` and one epoch of the shared training loop."""
    torch.manual_seed(0)
    method = Pt2eQAT(make_config(Pt2eQAT, {"calibration_images": 2}))
    graph = method.compress(ctx, create_model("unet_small", num_classes=ctx.num_classes, **KW))
    before = copy.deepcopy(graph.state_dict())
    ctx.train(graph, method.finetune_epochs(ctx), method.finetune_lr(ctx), [Stage(method)])
    return method, graph, before


def test_the_graph_has_fake_quantizers_that_train(trained, ctx):
    method, graph, before = trained
    assert count_fake_quantizers(graph) > 0
    assert ctx.extras["pt2e_qat"]["fake_quantizers"] == count_fake_quantizers(graph)
    assert ctx.extras["pt2e_qat"]["calibration_images"] == 2
    after = graph.state_dict()
    weights = [k for k, p in graph.named_parameters() if p.requires_grad]
    assert weights and all(not torch.equal(before[k], after[k]) for k in weights)
    # the activation fake-quantizers' ranges moved with the training batches
    scales = [k for k in after if k.startswith("activation_post_process") and
              k.endswith(".scale") and after[k].numel() == 1]
    assert scales and any(not torch.equal(before[k], after[k]) for k in scales)


def test_conversion_computes_what_the_fake_quantized_model_computed(trained, ctx):
    from torchao.quantization.pt2e import disable_observer
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    method, graph, _ = trained
    deployed = copy.deepcopy(method.deployed)
    load_twin(deployed, graph)
    deployed.eval()
    deployed.apply(disable_observer)
    images = ctx.calibration_images(4)
    with torch.no_grad():
        fake = torch.cat([deployed(images[i : i + 1]) for i in range(len(images))])
        converted = convert_pt2e(deployed)
        real = torch.cat([converted(images[i : i + 1]) for i in range(len(images))])
    assert (fake - real).abs().max() <= LOGIT_TOLERANCE * fake.abs().max()
    agree = (fake.argmax(1) == real.argmax(1)).float().mean()
    assert agree >= MIN_ARGMAX_AGREEMENT
    # no transposed conv keeps weights per input channel (axis 0), which XNNPACK cannot run
    tconvs = [n for n in converted.graph.nodes if "conv_transpose" in str(n.target)]
    assert tconvs  # the tiny U-Net upsamples with transposed convs
    for n in tconvs:
        w = n.args[1]
        assert not ("per_channel" in str(w.target) and w.args[3] == 0), w.format_node()


def test_twins_that_differ_do_not_exchange_state(trained):
    method, graph, _ = trained
    deeper = create_model("unet_small", num_classes=3, base_channels=4, depth=3)
    other = prepare(capture(deeper, (1, 3, 32, 32)), per_channel=True, qat=True)
    with pytest.raises(RuntimeError, match="differ in their operations"):
        load_twin(other, graph)


class DataDependent(torch.nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


def test_a_model_torch_export_cannot_capture_is_not_applicable():
    with pytest.raises(NotApplicable, match="torch.export cannot capture DataDependent"):
        capture(DataDependent(), (1, 3, 8, 8))


@pytest.mark.parametrize("field,value,valid", [("epochs", -1, ">= 0"),
                                               ("calibration_images", 0, ">= 1"),
                                               ("per_channel", "maybe", "true or false")])
def test_bad_setting_is_one_line(field, value, valid, capsys, tmp_path):
    rc = main(["run", "--method", "pt2e_qat", "--model", "unet_small", "--budget", "smoke",
               "--results", str(tmp_path), "--set", f"{field}={json.dumps(value)}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "'pt2e_qat'" in err and field in err and valid in err, err


@pytest.mark.slow
def test_finalize_lowers_a_program_that_agrees_with_the_fake_quantized_model(tmp_path):
    """The whole plugin, ExecuTorch lowering included (a minute on 2 cores)."""
    from bench.budgets import get_budget
    from bench.runtimes.base import INT8, RuntimeModule

    budget = get_budget("smoke", {"train_images": 8, "eval_images": 4, "batch_size": 4,
                                  "calibration_images": 4})
    spec = RunSpec("unet_small", "pt2e_qat", "pt2e_qat", [], "synthetic", budget, 0, dict(KW))
    run = RunContext(spec, device=torch.device("cpu"), results=tmp_path)
    method = Pt2eQAT(make_config(Pt2eQAT, {"calibration_images": 2}))
    graph = method.compress(run, create_model("unet_small", num_classes=run.num_classes, **KW))
    run.train(graph, 1, method.finetune_lr(run), [Stage(method)])
    out = method.finalize(run, graph)
    assert isinstance(out, RuntimeModule) and out.precision == INT8
    assert method.check(out, {}) == []
    assert run.extras["pt2e_qat"]["pte_argmax_agreement"] >= 0.95


class UpsampleBN(torch.nn.Module):
    """A transposed convolution followed by BatchNorm, as in ENet's upsampling bottleneck."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(8)
        self.up = torch.nn.ConvTranspose2d(8, 8, 2, stride=2, bias=False)
        self.up_bn = torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Conv2d(8, 3, 1)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.head(torch.relu(self.up_bn(self.up(x))))


def _trained_upsample_bn() -> torch.nn.Module:
    torch.manual_seed(0)
    model = UpsampleBN()
    with torch.no_grad():
        for bn in (model.bn, model.up_bn):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
    return model.eval()


def test_folding_transposed_conv_batchnorm_keeps_the_outputs():
    from methods.toolkits.pt2e import fold_transposed_conv_bn

    model = _trained_upsample_bn()
    graph = fold_transposed_conv_bn(capture(model, (1, 3, 16, 16)))
    assert sum("batch_norm" in str(n.target) for n in graph.graph.nodes) == 1  # self.bn stays
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(graph(x[:1]), model(x[:1]), atol=1e-5)


@pytest.mark.slow  # torchao's QAT pattern matching and the lowering: ~70 s on the shared host
def test_qat_program_delegates_every_convolution_to_xnnpack():
    """Version 1 left a transposed convolution followed by BatchNorm in ExecuTorch's portable
    kernel (its weight computed at run time by the training-form fold): 0.51x on ENet."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e import disable_observer
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from methods.toolkits.pt2e import fold_transposed_conv_bn, observe

    shape = (1, 3, 16, 16)
    graph = prepare(fold_transposed_conv_bn(capture(_trained_upsample_bn(), shape)),
                    per_channel=True, qat=True)
    graph.eval()
    observe(graph, torch.randn(4, 3, 16, 16))
    graph.apply(disable_observer)
    exported = torch.export.export(convert_pt2e(graph), (torch.zeros(shape),))
    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    outside = [str(n.target) for n in edge.exported_program().graph_module.graph.nodes
               if n.op == "call_function" and "convolution" in str(n.target)]
    assert outside == []
