"""Method conformance, parametrized over the registry (the shape of timm's
tests/test_models.py): every registered method and pipeline preset, in its cheapest
configuration, runs end to end through the real runner on a tiny U-Net at the tiny smoke
budget; its artifact reloads from the bytes alone; every stage's `check` passes on the
reloaded model; and a corrupted config raises ConfigError. A new plugin is covered the
moment it registers (with its defaults, unless CHEAPEST names cheaper settings).

Also over the registry: every `--set` mistake, for every method and every field (a value
of the wrong type; a value out of range where the field declares one), exits 2 with one
line from the real CLI entry point.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
import torch

from bench.cli import main
from bench.config import ConfigError, field_types, type_words
from bench.export import load_model, stage_problems
from bench.method import METHODS, PIPELINES, expand_methods, make_config
from bench.records import OK
from bench.runner import run_one
from bench.spec import RunSpec

MODEL = "unet_small"
MODEL_KWARGS = {"base_channels": 4, "depth": 2}  # ~10k parameters: seconds a run
# cheaper settings than the defaults, where a method has them; anything else runs with its
# defaults (a new plugin included)
CHEAPEST: dict[str, dict] = {
    "kmeans": {"bits": 2, "first_last_bits": 2, "iterations": 3},
    "at": {"layers": "output"},
    "qat": {"epochs": 0},
    "ptq": {"calibration_images": 2},
    "nncf_ptq": {"calibration_images": 2},
    "pt2e_ptq": {"calibration_images": 2},
    "pt2e_qat": {"calibration_images": 2},
}
NAMES = sorted(set(METHODS.names()) | set(PIPELINES.names()))
# end-to-end runs too slow for the default suite, run with `-m slow`: pt2e_ptq lowers two
# ExecuTorch programs (its own and the float baseline's), 1-4 minutes on 2 cores; pt2e_qat
# too, after two torch.export captures and its fine-tuning
SLOW = {"pt2e_ptq", "pt2e_qat"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory, tiny_budget_module):
    """One results directory for every run here, so the tiny baseline (also every
    distiller's teacher) is trained once."""
    return tmp_path_factory.mktemp("conformance"), tiny_budget_module


@pytest.fixture(scope="module")
def tiny_budget_module():
    from bench.budgets import get_budget

    return get_budget("smoke", {"train_images": 8, "eval_images": 4, "latency_runs": 2,
                                "latency_warmup": 0, "batch_size": 4,
                                "calibration_images": 4})


def _spec(name: str, budget) -> RunSpec:
    sets = CHEAPEST.get(name, {})
    (v,) = [v for v in expand_methods(name, sets) if v.label == name]
    return RunSpec(model=MODEL, method=v.spec, label=v.label, stages=v.resolved(),
                   dataset="synthetic", budget=budget, seed=0, model_kwargs=MODEL_KWARGS)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in NAMES])
def test_method_runs_reloads_and_checks(name, shared):
    results, budget = shared
    rec = run_one(_spec(name, budget), results=results, device=torch.device("cpu"))
    assert rec["status"] == OK, rec.get("error")
    assert math.isfinite(rec["metrics"]["miou"]) and rec["metrics"]["size_bytes"] > 0
    model, header, stages = load_model(results / rec["artifact"])
    assert [s["method"] for s in header["stages"]] == name_stages(name)
    assert stage_problems(model, header, stages) == []
    assert json.loads(json.dumps(rec["extras"])) == rec["extras"]  # facts are JSON


def name_stages(name: str) -> list[str]:
    return (PIPELINES.get(name)[0] if name in PIPELINES else name).split("+")


def _wrong_type(tp) -> object:
    """A JSON value no annotation of this kind admits."""
    words = type_words(tp)
    return "not-a-number" if "number" in words or "integer" in words else 12345


def _bad_values(cls) -> list[tuple[str, object]]:
    """(field, value) pairs that must be rejected: a wrong type for every typed field,
    and for every declared range a value just outside it."""
    out = []
    hints = field_types(cls.Config)
    for f in dataclasses.fields(cls.Config):
        tp = hints[f.name]
        if tp is not Any:
            out.append((f.name, _wrong_type(tp)))
        rng = f.metadata.get("range")
        if rng is None:
            continue
        if rng.choices is not None:
            numeric = all(isinstance(c, int) for c in rng.choices)
            out.append((f.name, max(rng.choices) + 1 if numeric else "no-such-choice"))
        for bound, step in ((rng.ge, -1), (rng.gt, 0), (rng.le, 1), (rng.lt, 0)):
            if bound is not None:
                out.append((f.name, bound + step if "integer" in type_words(tp)
                            else bound + step * 0.5))
    return out


CASES = [(n, f, v) for n in sorted(METHODS.names()) for f, v in _bad_values(METHODS.get(n))]
# the free-form fields (layer sets), and the mistake that used to end in a traceback
CASES += [("at", "layers", "bogus"), ("cwd", "feature", "bogus"), ("kd", "alpha", 2)]


def test_every_method_field_with_a_type_or_range_has_a_case():
    covered = {(n, f) for n, f, _ in CASES}
    for n in METHODS.names():
        for f in dataclasses.fields(METHODS.get(n).Config):
            assert (n, f.name) in covered, (n, f.name)


@pytest.mark.parametrize("name,field,value", CASES,
                         ids=[f"{n}-{f}-{v}" for n, f, v in CASES])
def test_bad_setting_exits_2_with_one_line(name, field, value, capsys, tmp_path):
    rc = main(["run", "--method", name, "--model", MODEL, "--budget", "smoke",
               "--results", str(tmp_path), "--set", f"{field}={json.dumps(value)}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    assert f"'{name}'" in err and field in err, err


@pytest.mark.parametrize("name", sorted(METHODS.names()))
def test_corrupted_config_raises_config_error(name):
    cls = METHODS.get(name)
    bad = _bad_values(cls)
    overrides = dict([bad[0]]) if bad else {"no_such_setting": 1}
    with pytest.raises(ConfigError):
        make_config(cls, overrides)
