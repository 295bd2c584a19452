"""Fixtures shared by the method tests."""

import pytest


@pytest.fixture
def shared_results(tmp_path_factory):
    """One results directory for the whole session, so the distillation tests (kd, at,
    cwd, cheapconv) train each tiny baseline and teacher once between them; a module that
    needs its own directory defines its own `shared_results`."""
    return tmp_path_factory.getbasetemp() / "distill-results"


@pytest.fixture
def round_trip(tmp_path):
    """Export `model` through `stage`, reload it from the bytes, and assert what every
    method test asserts of that: the same outputs and the stage's own check passing.
    Returns (loaded model, header, stages) for further checks."""
    import torch

    from bench.export import export_model, load_model

    def check(model, stage, ctx, model_name):
        path = export_model(model, tmp_path / "m", model_name=model_name,
                            num_classes=ctx.num_classes, model_kwargs={}, stages=[stage],
                            ctx=ctx)
        loaded, header, stages = load_model(path)
        x = torch.randn(1, 3, 64, 80)
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))
        assert stages[0].method.check(loaded, header["stages"][0]["meta"]) == []
        return loaded, header, stages

    return check
