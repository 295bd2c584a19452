"""Mixed precision (`weight_bits=auto`): the allocation is the best one within the budget
(against brute force), the measured sensitivity grows as bits shrink, a run keeps its
payload within `size_budget_mb` with every layer at its chosen width in the artifact, and
the budget settings are refused one line at a time when they do not fit together."""

from __future__ import annotations

import itertools
import json
import struct

import pytest
import torch

from bench.cli import main
from bench.export import load_model
from bench.method import NotApplicable
from bench.verify import verify_record
from methods.quant import mixed
from methods.quant.modules import FROZEN_LAYERS
from methods.quant.plan import QuantConfig, fold_batchnorms, plan_quantization
from methods.quant.trace import trace_dataflow

TINY = {"base_channels": 4, "depth": 2}


def test_allocation_is_optimal_within_the_budget():
    gen = torch.Generator().manual_seed(0)
    names = [f"l{i}" for i in range(6)]
    numel = {n: int(torch.randint(50, 5000, (1,), generator=gen)) for n in names}
    sens = {}
    for n in names:  # error falls with bits, at random rates
        e2 = float(torch.rand(1, generator=gen)) * 10
        sens[n] = {2: e2, 4: e2 * float(torch.rand(1, generator=gen)) * 0.3, 8: 1e-4}
    for mean in (2.5, 3.0, 4.0, 6.0):
        budget = int(sum(mixed.code_bytes(k, 8) for k in numel.values()) * mean / 8)
        bits = mixed.allocate(sens, numel, budget)
        used = sum(mixed.code_bytes(numel[n], b) for n, b in bits.items())
        assert used <= budget
        best = min(sum(sens[n][b] for n, b in zip(names, combo))
                   for combo in itertools.product(mixed.AUTO_BITS, repeat=len(names))
                   if sum(mixed.code_bytes(numel[n], b) for n, b in zip(names, combo)) <= budget)
        got = sum(sens[n][b] for n, b in bits.items())
        assert got <= best * 1.02 + 1e-9, (mean, got, best)  # the byte grid rounds up


def test_allocation_refuses_a_budget_below_two_bits():
    with pytest.raises(NotApplicable, match="2 bits"):
        mixed.allocate({"a": {2: 1.0, 4: 0.5, 8: 0.0}}, {"a": 1000}, 249)
    assert mixed.allocate({"a": {2: 1.0, 4: 0.5, 8: 0.0}}, {"a": 1000}, 250) == {"a": 2}
    assert mixed.allocate({"a": {2: 1.0, 4: 0.5, 8: 0.0}}, {"a": 1000}, 10**6) == {"a": 8}


def test_sensitivity_falls_as_bits_grow(make_ctx):
    ctx = make_ctx("qat", "unet_small", model_kwargs=TINY)
    torch.manual_seed(0)
    model = ctx.build_model().eval()
    x = ctx.calibration_images(2)
    plan = plan_quantization(model, trace_dataflow(model, x[:1]), QuantConfig())
    fold_batchnorms(model, plan.folds)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sens = mixed.sensitivity(model, plan, list(plan.layers), x, 2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # restored
    for name, t in sens.items():
        assert t[2] > t[4] > t[8] >= 0, (name, t)


def _payload(path) -> int:
    """Bytes of an artifact's tensors: the file less its fixed head and JSON header."""
    raw = path.read_bytes()
    _, _, header_len, _ = struct.unpack_from("<8sIQI", raw)
    return len(raw) - struct.calcsize("<8sIQI") - header_len


def test_auto_bits_run_respects_the_size_budget(make_spec, run_spec, results):
    rec = run_spec(make_spec("qat", "unet_small", model_kwargs=TINY, epochs=0,
                             weight_bits="auto", mean_weight_bits=3.0))
    assert rec["status"] == "ok", rec.get("error")
    fact = rec["extras"]["mixed_precision"]
    assert fact["chosen_code_bytes"] <= fact["code_budget_bytes"]
    assert _payload(results / rec["artifact"]) == fact["planned_payload_bytes"]
    chosen = {b for n, b in fact["layer_bits"].items() if n in fact["sensitivity"]}
    assert len(chosen) > 1  # 3 bits on average: a mix, not one width

    # the same model under an absolute budget just below that run's payload
    budget = (fact["planned_payload_bytes"] - 40) / 1e6
    rec2 = run_spec(make_spec("qat", "unet_small", model_kwargs=TINY, epochs=0,
                              weight_bits="auto", size_budget_mb=budget))
    assert rec2["status"] == "ok", rec2.get("error")
    fact2 = rec2["extras"]["mixed_precision"]
    assert fact2["planned_payload_bytes"] <= budget * 1e6
    assert _payload(results / rec2["artifact"]) == fact2["planned_payload_bytes"]
    model, header, stages = load_model(results / rec2["artifact"])
    assert stages[0].method.check(model, header["stages"][0]["meta"]) == []
    shipped = {n: m.w_bits for n, m in model.named_modules() if isinstance(m, FROZEN_LAYERS)}
    assert shipped == fact2["layer_bits"]
    assert verify_record(rec2, results) == []


def test_a_budget_no_width_meets_is_not_applicable(make_spec, run_spec):
    rec = run_spec(make_spec("ptq", "unet_small", model_kwargs=TINY, weight_bits="auto",
                             size_budget_mb=0.001))
    assert rec["status"] == "not applicable", rec.get("error")
    assert "2 bits" in rec["error"]


@pytest.mark.parametrize("sets", [
    {"weight_bits": "auto"},
    {"weight_bits": "auto", "size_budget_mb": 1.0, "mean_weight_bits": 4.0},
    {"size_budget_mb": 1.0},
    {"weight_bits": 4, "mean_weight_bits": 4.0},
    {"weight_bits": "eight"},
])
@pytest.mark.parametrize("method", ["qat", "ptq"])
def test_budget_settings_that_do_not_fit_exit_2(method, sets, capsys, tmp_path):
    argv = ["run", "--method", method, "--model", "unet_small", "--budget", "smoke",
            "--results", str(tmp_path)]
    for k, v in sets.items():
        argv += ["--set", f"{k}={json.dumps(v)}"]
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    assert f"'{method}'" in err and ("weight_bits" in err or "budget" in err), err
