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
