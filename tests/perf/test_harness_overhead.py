"""`make perf`: what the harness costs on top of a bare PyTorch loop on the same model and
data, for a training epoch and a full evaluation. The goal is under 5 %; the ratios are
printed at the end (a benchmark, not a unit test: timings are not asserted). Both loops
use the same optimizer and schedule (SGD, momentum 0.9, poly), and the ratio is of the
fastest of five rounds: on a shared machine the fastest round is the least disturbed one,
the median moves with the neighbours."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.budgets import get_budget
from bench.context import RunContext
from bench.method import expand_methods
from bench.spec import RunSpec, TrainConfig
from bench.train import make_loader, poly_lr, train

pytestmark = pytest.mark.perf
BUDGET = get_budget("smoke", {"train_images": 64, "eval_images": 64, "batch_size": 16})
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    (v,) = expand_methods("none")
    spec = RunSpec("enet", v.spec, v.label, v.resolved(), "synthetic", BUDGET, 0)
    return RunContext(spec, device=torch.device("cpu"), results=tmp_path_factory.mktemp("r"))


def _model(ctx):
    torch.manual_seed(0)
    return ctx.build_model()


def _bare_train(model, dataset):
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    loader = make_loader(dataset, 16, shuffle=True, seed=0, drop_last=True)
    model.train()
    total = len(loader)
    for step, (x, y) in enumerate(loader):
        for g in opt.param_groups:
            g["lr"] = poly_lr(0.05, step, total, 0.9)
        loss = F.cross_entropy(model(x), y, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@torch.no_grad()
def _bare_eval(model, dataset, n):
    model.eval()
    conf = torch.zeros(n * n, dtype=torch.int64)
    for x, y in make_loader(dataset, 16, shuffle=False, seed=0):
        p = model(x).argmax(1)
        v = y != 255
        conf += torch.bincount(y[v] * n + p[v], minlength=n * n)
    return conf


def _record(name, benchmark):
    TIMES[name] = benchmark.stats.stats.min


def test_train_epoch_bare(benchmark, ctx):
    ds = ctx.dataset("train", train=True)
    benchmark.pedantic(lambda: _bare_train(_model(ctx), ds), rounds=5, warmup_rounds=1)
    _record("train_bare", benchmark)


def test_train_epoch_harness(benchmark, ctx):
    ds = ctx.dataset("train", train=True)
    sgd = TrainConfig(optimizer="sgd")  # the bare loop's optimizer, at the same lr
    benchmark.pedantic(lambda: train(_model(ctx), ds, epochs=1, lr=0.05 / sgd.sgd_lr_scale,
                                     batch_size=16, cfg=sgd, device=torch.device("cpu"),
                                     ignore_index=255, seed=0),
                       rounds=5, warmup_rounds=1)
    _record("train_harness", benchmark)


def test_eval_bare(benchmark, ctx):
    m, ds = _model(ctx), ctx.dataset("val")
    benchmark.pedantic(lambda: _bare_eval(m, ds, ctx.num_classes), rounds=5, warmup_rounds=1)
    _record("eval_bare", benchmark)


def test_eval_harness(benchmark, ctx):
    m = _model(ctx)
    benchmark.pedantic(lambda: ctx.evaluate(m), rounds=5, warmup_rounds=1)
    _record("eval_harness", benchmark)


def test_zz_report_overhead():
    for what in ("train", "eval"):
        bare, harness = TIMES.get(f"{what}_bare"), TIMES.get(f"{what}_harness")
        if bare and harness:
            ratio = harness / bare
            verdict = "within the 5 % goal" if ratio <= 1.05 else "OVER the 5 % goal"
            print(f"\nharness/bare {what}: {ratio:.3f} ({100 * (ratio - 1):+.1f} %) {verdict}")
