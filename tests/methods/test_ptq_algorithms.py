"""PTQ algorithms (`ptq --set algorithm=...`, `equalize`, `bias_correction`): each lowers
the quantization error of a tiny U-Net below plain max-abs (`minmax`) calibration on the
same calibration images, the ones that correct weights also beat today's `percentile`
start, and a run with them goes end to end (artifact reloads, checks, verifies). Defaults
stay out of the run ids, so the runs recorded before these settings keep their ids."""

from __future__ import annotations

import pytest
import torch

from bench.export import load_model
from bench.method import METHODS, Stage, stages_from_record
from bench.verify import verify_record
from methods.quant.algorithms import _regions
from methods.quant.modules import FROZEN_LAYERS
from methods.quant.plan import QuantConfig, fold_batchnorms, plan_quantization
from methods.quant.trace import trace_dataflow

TINY = {"base_channels": 4, "depth": 2}


def _model(ctx) -> torch.nn.Module:
    torch.manual_seed(0)
    m = ctx.build_model().eval()
    for bn in m.modules():  # non-trivial statistics, so folding and equalization matter
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.3, 3.0)
    return m


def _error(make_ctx, **sets) -> float:
    """Relative squared error of the frozen W2A8 model's logits against the float model's
    on validation images (not the calibration ones)."""
    ctx = make_ctx("ptq", "unet_small", model_kwargs=TINY, weight_bits=2,
                   calibration_images=4, **sets)
    ds = ctx.dataset("val")
    x = torch.stack([ds[i][0] for i in range(4)])
    with torch.no_grad():
        ref = _model(ctx)(x)
    method = stages_from_record(ctx.spec.stages)[0].method
    q = method.finalize(ctx, method.compress(ctx, _model(ctx)))
    with torch.no_grad():
        out = q(x)
    return float(((out - ref) ** 2).sum() / (ref**2).sum())


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    return {}


@pytest.fixture
def errors(make_ctx, baselines):
    def get(key: str, **sets) -> float:
        if key not in baselines:
            baselines[key] = _error(make_ctx, **sets)
        return baselines[key]

    return get


@pytest.mark.parametrize("sets", [
    {"algorithm": "percentile"},
    {"algorithm": "gptq"},
    {"algorithm": "gpfq"},
    {"algorithm": "adaround", "adaround_iters": 40},
    {"equalize": True},
    {"bias_correction": True},
], ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_algorithm_lowers_the_error_below_minmax(sets, errors):
    minmax = errors("minmax", algorithm="minmax")
    err = errors(str(sorted(sets.items())), **sets)
    assert err < minmax, (sets, err, minmax)
    if sets.get("algorithm") in ("gptq", "gpfq") or sets.get("bias_correction"):
        # these correct the weights (or biases) of the percentile-calibrated model
        assert err < errors("percentile", algorithm="percentile"), (sets, err)


def _regions_of(model: torch.nn.Module, x: torch.Tensor) -> dict[str, list[str]]:
    trace = trace_dataflow(model, x)
    plan = plan_quantization(model, trace, QuantConfig())
    fold_batchnorms(model, plan.folds)
    return dict(_regions(model, trace, plan))


def test_equalization_regions_follow_relu_only_into_convs(make_ctx):
    """U-Net's conv -> BN -> ReLU -> conv pairs are regions (a transposed conv may be the
    sink); a conv whose output also feeds a skip concatenation, or the logits, is not."""
    ctx = make_ctx("ptq", "unet_small", model_kwargs=TINY)
    regions = _regions_of(_model(ctx), ctx.calibration_images(1))
    assert regions["net.inc.0"] == ["net.inc.3"]
    assert regions["net.down.1.3"] == ["net.up.0.up"]
    for not_src in ("net.inc.3", "net.down.0.3", "net.up.0.up", "net.head"):
        assert not_src not in regions


def test_equalization_regions_pass_max_pooling():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                            torch.nn.Conv2d(6, 4, 3), torch.nn.PReLU(), torch.nn.Conv2d(4, 2, 1))
    regions = _regions_of(m.eval(), torch.randn(1, 3, 16, 16))
    assert regions == {"0": ["3"]}  # PReLU is not among brevitas's scale-invariant ops


def test_defaults_stay_out_of_the_run_id():
    cls = METHODS.get("ptq")
    plain = Stage(cls(cls.Config())).config_dict()
    assert not {"algorithm", "equalize", "bias_correction", "adaround_iters",
                "size_budget_mb", "mean_weight_bits"} & set(plain)
    gptq = Stage(cls(cls.Config(algorithm="gptq", equalize=True))).config_dict()
    assert gptq["algorithm"] == "gptq" and gptq["equalize"] is True
    assert {k: v for k, v in gptq.items() if k not in ("algorithm", "equalize")} == plain


@pytest.mark.parametrize("sets", [
    {"algorithm": "gptq", "equalize": True, "bias_correction": True},
    pytest.param({"algorithm": "adaround", "adaround_iters": 3}, marks=pytest.mark.slow),
], ids=["gptq-eq-bc", "adaround"])
def test_algorithm_run_end_to_end(sets, make_spec, run_spec, results):
    rec = run_spec(make_spec("ptq", "unet_small", model_kwargs=TINY, weight_bits=4, **sets))
    assert rec["status"] == "ok", rec.get("error")
    fact = rec["extras"]["ptq"]
    assert fact["algorithm"] == sets["algorithm"]
    assert fact["bias_corrected"] == bool(sets.get("bias_correction"))
    assert (fact["equalized_regions"] or 0) > 0 if sets.get("equalize") else \
        fact["equalized_regions"] is None
    model, header, stages = load_model(results / rec["artifact"])
    assert stages[0].method.check(model, header["stages"][0]["meta"]) == []
    layers = [m for m in model.modules() if isinstance(m, FROZEN_LAYERS)]
    assert {m.w_bits for m in layers} == {4, 8}  # first and last layers at 8
    assert verify_record(rec, results) == []
