"""Shared fixtures: tiny data, tiny budgets, a results directory per test.

The synthetic data cache lives in one directory per test session, so the few images the
smoke budget needs are generated once.
"""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _data_cache(tmp_path_factory):
    if "SEGBENCH_DATA_CACHE" not in os.environ:
        os.environ["SEGBENCH_DATA_CACHE"] = str(tmp_path_factory.mktemp("data-cache"))
    yield


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results"


@pytest.fixture
def tiny_budget():
    """The smoke budget shrunk further: 16 training images, 8 for evaluation."""
    from bench.budgets import get_budget

    return get_budget("smoke", {"train_images": 16, "eval_images": 8, "latency_runs": 3,
                                "latency_warmup": 1, "batch_size": 8, "calibration_images": 8})


@pytest.fixture
def make_spec(tiny_budget):
    """make_spec(method="none", model="enet", **set) -> RunSpec on the tiny budget."""
    from bench.method import expand_methods
    from bench.spec import RunSpec

    def make(method: str = "none", model: str = "enet", seed: int = 0, model_kwargs=None,
             budget=None, **sets):
        (v,) = expand_methods(method, sets)
        return RunSpec(model=model, method=v.spec, label=v.label, stages=v.resolved(),
                       dataset="synthetic", budget=budget or tiny_budget, seed=seed,
                       model_kwargs=model_kwargs or {})

    return make


@pytest.fixture
def make_ctx(make_spec, results):
    """make_ctx(method, model, **set) -> RunContext on CPU with the tiny budget."""
    from bench.context import RunContext

    def make(method: str = "none", model: str = "enet", **kw):
        return RunContext(make_spec(method, model, **kw), device=torch.device("cpu"),
                          results=results)

    return make


@pytest.fixture
def run_spec(results):
    """run_spec(spec) -> the run's record, executed through the real runner on CPU."""
    from bench.runner import run_one

    def run(spec):
        return run_one(spec, results=results, device=torch.device("cpu"))

    return run


@pytest.fixture
def tiny_convnet():
    """A factory of one small, seeded conv net (the same weights on every call): what the
    latency tests time against itself or a copy."""
    from torch import nn

    def make() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(32, 5, 1)).eval()

    return make
