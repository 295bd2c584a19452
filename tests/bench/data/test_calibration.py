"""The synthetic dataset is calibrated: trained models land in 0.55-0.85 mIoU at budget
`quick` (room for compression damage to show) and untrained ones stay below 0.15."""

import pytest
import torch

from models import cpu_default_models


@pytest.mark.parametrize("model", cpu_default_models())
def test_untrained_models_score_below_0_15(make_ctx, model):
    ctx = make_ctx("none", model)
    assert ctx.evaluate(ctx.build_model())["miou"] < 0.15


@pytest.mark.slow
@pytest.mark.parametrize("model", cpu_default_models())
def test_quick_budget_lands_in_the_calibrated_range(make_spec, run_spec, model):
    from bench.budgets import get_budget

    torch.set_num_threads(2)
    rec = run_spec(make_spec("none", model, budget=get_budget("quick")))
    assert 0.55 <= rec["metrics"]["miou"] <= 0.85
