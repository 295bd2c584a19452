"""prune_unstructured: exact sparsity, masks enforced through the shared training loop, the
AGP schedule, and an artifact that reloads to the same outputs while being several times
smaller than dense."""

from __future__ import annotations

import pytest
import torch

from bench.artifact import state_bytes_dense
from bench.config import ConfigError
from bench.export import export_model, load_model
from bench.method import Stage, expand_methods
from bench.verify import verify_record
from methods.prune_unstructured import UnstructuredPruning
from methods.pruning.masks import (
    agp_sparsity,
    first_layers,
    last_layers,
    layer_zero_counts,
)


def _method(**kw) -> UnstructuredPruning:
    return UnstructuredPruning(Config(**kw))


def test_first_and_last_layers_are_the_stem_and_the_classifier(make_ctx):
    ctx = make_ctx(model="enet")
    enet = ctx.build_model()
    assert first_layers(enet) == ["net.initial.conv"]
    assert last_layers(enet) == ["net.fullconv"]
    unet = ctx.build_model("unet_small")
    assert first_layers(unet) == ["net.inc.0"]
    assert last_layers(unet) == ["net.head"]


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_achieved_sparsity_is_the_target_within_one_weight(make_ctx, scope):
    ctx = make_ctx("prune_unstructured", "enet")
    model = ctx.build_model()
    m = _method(sparsity=0.37, scope=scope)
    m.compress(ctx, model)
    counts = layer_zero_counts(model, m.layers)
    assert "net.initial.conv" not in counts and "net.fullconv" not in counts
    if scope == "layer":
        for name, (zeros, n) in counts.items():
            assert abs(zeros - 0.37 * n) <= 1, name
    else:
        zeros = sum(z for z, _ in counts.values())
        total = sum(n for _, n in counts.values())
        assert abs(zeros - 0.37 * total) <= 1
        spread = [z / n for z, n in counts.values()]
        assert max(spread) - min(spread) > 0.05  # global ranking: layers differ
    # excluded layers are untouched
    for name in ("net.initial.conv", "net.fullconv"):
        w = model.get_submodule(name).weight
        assert torch.count_nonzero(w) == w.numel()


def test_masks_stay_enforced_through_the_training_loop(make_ctx):
    ctx = make_ctx("prune_unstructured", "enet")
    model = ctx.build_model()
    m = _method(sparsity=0.75)
    m.compress(ctx, model)
    masks = {n: k.clone() for n, k in m.masks.items()}
    before = {n: model.get_submodule(n).weight.detach().clone() for n in masks}
    seen = []

    def check_zero(module, inputs, name):
        seen.append(name)
        assert not module.weight[~masks[name]].any(), f"{name}: pruned weight is live"

    hooks = [model.get_submodule(n).register_forward_pre_hook(
        lambda mod, inp, n=n: check_zero(mod, inp, n)) for n in masks]
    summary = ctx.train(model, 2, ctx.budget.lr, [Stage(m)], desc="test")
    for h in hooks:
        h.remove()
    assert summary["steps"] >= 2 and len(seen) >= 2 * len(masks)
    changed = 0
    for n, keep in masks.items():
        w = model.get_submodule(n).weight.detach()
        assert not w[~keep].any()
        changed += int((w[keep] != before[n][keep]).sum())
    assert changed > 0  # the kept weights did train
    assert all(torch.equal(m.masks[n].cpu(), masks[n].cpu()) for n in masks)


def test_agp_schedule_formula():
    kw = dict(initial=0.1, final=0.9, begin=100, end=500, frequency=100)
    assert agp_sparsity(99, **kw) is None and agp_sparsity(501, **kw) is None
    assert agp_sparsity(100, **kw) == pytest.approx(0.1)
    assert agp_sparsity(150, **kw) is None  # not an event
    assert agp_sparsity(300, **kw) == pytest.approx(0.9 + (0.1 - 0.9) * 0.5 ** 3)
    assert agp_sparsity(500, **kw) == pytest.approx(0.9)
    assert agp_sparsity(450, **dict(kw, frequency=150)) is None
    assert agp_sparsity(500, **dict(kw, frequency=150)) == pytest.approx(0.9)  # end is an event


def test_gradual_schedule_prunes_monotonically_to_the_target(make_ctx):
    ctx = make_ctx("prune_unstructured", "enet")
    model = ctx.build_model()
    m = _method(sparsity=0.8, schedule="gradual", frequency=3)
    m.compress(ctx, model)
    assert m.current == 0.0 and not m.masks  # nothing pruned before fine-tuning
    total, g = 24, torch.Generator().manual_seed(0)
    pruned_before = {}
    for step in range(1, total + 1):
        with torch.no_grad():  # stand-in for an optimizer step that disturbs every weight
            for n in m.layers:
                w = model.get_submodule(n).weight
                w.add_(torch.randn(w.shape, generator=g) * 1e-3)
        m.on_step(ctx, model, step, total)
        for n, keep in m.masks.items():
            assert not model.get_submodule(n).weight[~keep].any()
            if n in pruned_before:  # once pruned, always pruned
                assert not (keep & pruned_before[n]).any()
            pruned_before[n] = ~keep
    begin, end = m.window(total)
    assert (begin, end) == (6, 18)
    steps = [s for s, _ in m.events]
    assert steps == [9, 12, 15, 18]  # begin itself holds s_i = 0: no event
    levels = [s for _, s in m.events]
    assert levels == sorted(levels) and levels[-1] == pytest.approx(0.8)
    for name, (zeros, n) in layer_zero_counts(model, m.layers).items():
        assert abs(zeros - 0.8 * n) <= 1, name


def test_unfinished_schedule_is_completed_and_reported(make_ctx):
    ctx = make_ctx("prune_unstructured", "enet")
    model = ctx.build_model()
    m = _method(sparsity=0.6, schedule="gradual", begin_step=1000, end_step=2000)
    m.compress(ctx, model)
    m.on_step(ctx, model, 1, 10)
    m.finalize(ctx, model)
    info = ctx.extras["prune_unstructured"]
    assert info["schedule_completed_in_finetuning"] is False
    assert info["dead_layers"] == []  # layer scope: every layer keeps 40 % of its weights
    for name, (zeros, n) in layer_zero_counts(model, m.layers).items():
        assert abs(zeros - 0.6 * n) <= 1, name


def test_artifact_round_trip_is_exact_and_several_times_smaller(make_ctx, tmp_path):
    ctx = make_ctx("prune_unstructured", "enet", sparsity=0.9)
    model = ctx.build_model().eval()
    (stage,) = expand_methods("prune_unstructured", {"sparsity": 0.9})[0].stages()
    stage.method.compress(ctx, model)
    stage.method.finalize(ctx, model)
    path = export_model(model, tmp_path / "m", model_name="enet", num_classes=ctx.num_classes,
                        model_kwargs={}, stages=[stage], ctx=ctx)
    loaded, header, stages = load_model(path)
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert path.suffix == ".sbz"
    assert path.stat().st_size * 3 < state_bytes_dense(state)
    assert stages[0].method.check(loaded, header["stages"][0]["meta"]) == []
    with torch.no_grad():  # a weight that should be zero is not: check() says so
        loaded.get_submodule(stage.method.layers[0]).weight.fill_(1.0)
        loaded.get_submodule(stage.method.layers[1]).weight.fill_(1.0)
    assert stages[0].method.check(loaded, header["stages"][0]["meta"])


def test_sensitivity_scope_meets_the_target_and_prunes_robust_layers_harder(make_ctx):
    ctx = make_ctx("prune_unstructured", "unet_small", model_kwargs={"base_channels": 4,
                                                                     "depth": 2})
    model = ctx.build_model().eval()
    m = _method(sparsity=0.8, scope="sensitivity")
    m.compress(ctx, model)
    counts = layer_zero_counts(model, m.layers)
    zeros = sum(z for z, _ in counts.values())
    total = sum(n for _, n in counts.values())
    assert 0.8 * total - 1 <= zeros <= 0.85 * total  # the target, less a knapsack grid step
    info = ctx.extras["prune_unstructured"]
    rates = info["allocated_sparsity"]
    assert set(rates) == set(m.layers) and len(set(rates.values())) > 1
    for name, (z, n) in counts.items():  # each layer holds the rate it was given
        assert abs(z - rates[name] * n) <= 1, name
    # the table it chose from: every layer at every rate, error growing with the rate
    table = info["sensitivity"]
    assert set(table) == set(m.layers)
    for row in table.values():
        errors = [row[k] for k in sorted(row, key=float)]
        assert errors[0] == 0.0 and errors[-1] > 0.0
    # the most robust layer (least error at 0.9) is pruned at least as hard as the most
    # sensitive one
    robust = min(table, key=lambda n: table[n]["0.9"])
    fragile = max(table, key=lambda n: table[n]["0.9"])
    assert rates[robust] >= rates[fragile]
    assert m.check(model, m.artifact_meta(model)) == []


def test_runner_records_achieved_sparsity_and_verifies(make_spec, run_spec, results):
    rec = run_spec(make_spec("prune_unstructured", "enet", sparsity=0.75))
    assert rec["status"] == "ok", rec.get("error")
    mt = rec["metrics"]
    info = rec["extras"]["prune_unstructured"]
    assert abs(info["prunable_sparsity"] - 0.75) < 1e-4
    # achieved over all parameters (BatchNorm, stem, classifier stay dense) is lower
    assert 0.6 < mt["sparsity"] < 0.75
    assert mt["nonzero_params"] == pytest.approx(mt["params"] * (1 - mt["sparsity"]))
    assert mt["effective_madds"] < 0.5 * mt["madds"]
    assert mt["size_bytes"] < 0.5 * mt["dense_size_bytes"]
    assert verify_record(rec, results) == []


Config = UnstructuredPruning.Config


def test_bad_settings_name_the_valid_choices():
    with pytest.raises(ConfigError, match="'prune_unstructured'.*scope='net'; valid: one of "
                                          "layer, global"):
        expand_methods("prune_unstructured", {"scope": "net"})
    with pytest.raises(ConfigError, match="schedule='agp'; valid: one of oneshot, gradual"):
        Config(schedule="agp")
    with pytest.raises(ValueError, match=r"sparsity=1.5; valid: a number in \[0, 1\)"):
        Config(sparsity=1.5)
    with pytest.raises(ConfigError, match="end_step=5; valid: null or an integer >= "
                                          "begin_step=10"):
        Config(schedule="gradual", begin_step=10, end_step=5)


def test_exclude_pattern_that_matches_nothing_is_an_error(make_ctx):
    ctx = make_ctx("prune_unstructured", "enet")
    with pytest.raises(ConfigError, match="exclude='net.nothing.\\*'; valid: patterns that "
                                          "match conv/linear layers"):
        _method(exclude=["net.nothing.*"]).compress(ctx, ctx.build_model())


def test_keep_mask_drops_what_a_stable_sort_drops_ties_included():
    from methods.pruning.masks import _keep_mask

    gen = torch.Generator().manual_seed(0)
    for n in (1, 2, 7, 1000):
        for sparsity in (0.0, 0.3, 0.5, 0.9, 1.0):
            for scores in (torch.rand(n, generator=gen), torch.zeros(n),
                           torch.randint(0, 3, (n,), generator=gen).float()):
                k = int(round(sparsity * n))
                expected = torch.ones(n, dtype=torch.bool)
                expected[torch.sort(scores, stable=True).indices[:k]] = False
                keep = _keep_mask(scores, sparsity)
                assert torch.equal(keep, expected), (n, sparsity)
                assert int((~keep).sum()) == k


def test_pruning_then_qat_passes_its_checks_on_the_reloaded_artifact(make_spec, run_spec):
    # QAT's rebuild changes which layer the loaded model's layer selection calls the last
    # one (U-Net's head); the check must look at the layers the artifact says were pruned
    rec = run_spec(make_spec("prune_unstructured+qat", "unet_small"))
    assert rec["status"] == "ok", rec.get("error")
    assert rec["metrics"]["sparsity"] > 0.3


# -- N:M semi-structured sparsity ---------------------------------------------------------

def test_nm_mask_keeps_the_largest_n_of_every_m_along_the_input_channels():
    from methods.pruning.masks import nm_group_counts, nm_mask

    torch.manual_seed(0)
    w = torch.randn(6, 8, 3, 3)
    keep = nm_mask(w, 2, 4, axis=1)
    assert torch.equal(nm_group_counts(w * keep, 4, axis=1), torch.full((6 * 2 * 9,), 2))
    group = w[1, 4:8, 2, 0].abs()  # one group: 4 input channels at a fixed (out, y, x)
    assert torch.equal(keep[1, 4:8, 2, 0], group >= group.sort().values[2])
    t = torch.randn(8, 5, 2, 2)  # a transposed conv's weight: inputs on axis 0
    assert nm_group_counts(t * nm_mask(t, 1, 4, axis=0), 4, axis=0).max() == 1
    with pytest.raises(ValueError, match="not a multiple of 4"):
        nm_mask(torch.randn(4, 6), 2, 4, axis=1)


@pytest.mark.parametrize("model_name", ["enet", "unet_small"])
def test_two_four_pattern_prunes_and_stores_exactly_two_of_four(make_ctx, round_trip,
                                                                model_name):
    from methods.pruning.masks import input_axis, nm_group_counts

    ctx = make_ctx("prune_unstructured", model_name, pattern="2:4")
    model = ctx.build_model().eval()
    (stage,) = expand_methods("prune_unstructured", {"pattern": "2:4"})[0].stages()
    stage.method.compress(ctx, model)
    stage.method.finalize(ctx, model)
    layers = stage.method.layers
    for name in layers:  # random init: no weight is zero unless the mask made it so
        layer = model.get_submodule(name)
        counts = nm_group_counts(layer.weight, 4, input_axis(layer))
        assert torch.equal(counts, torch.full_like(counts, 2)), name
    info = ctx.extras["prune_unstructured"]
    assert info["pattern"] == "2:4" and info["prunable_sparsity"] == 0.5
    loaded, header, stages = round_trip(model, stage, ctx, model_name)
    # the bytes: each pruned weight costs 17 of 32 bits (its value half the time + 1 mask
    # bit), what the N:M metadata would cost (2 bits for each kept weight of 4)
    from bench.artifact import encode_state
    from methods.codecs.sparse import encoded_bytes

    state = model.state_dict()
    stored = stage.method.encode(ctx, model, encode_state(state))
    weights = [f"{n}.weight" for n in layers]
    numel = sum(state[k].numel() for k in weights)
    assert sum(encoded_bytes(stored[k]) for k in weights) == pytest.approx(numel * 17 / 8,
                                                                           rel=0.01)
    with torch.no_grad():  # three nonzeros in one group: check() names the layer
        loaded.get_submodule(layers[0]).weight.fill_(1.0)
    assert any(layers[0] in p for p in stages[0].method.check(loaded,
                                                              header["stages"][0]["meta"]))


def test_pattern_settings_are_checked_and_leave_old_run_ids_alone(make_spec):
    with pytest.raises(ConfigError, match="pattern='2-4'; valid: null .* or N:M"):
        Config(pattern="2-4")
    with pytest.raises(ConfigError, match="pattern='4:4'"):
        Config(pattern="4:4")
    with pytest.raises(ConfigError, match="pattern='2:4'; valid: null with schedule=gradual"):
        Config(pattern="2:4", schedule="gradual")
    with pytest.raises(ConfigError, match="sparsity=0.9; valid: 0.75 .implied by pattern 1:4"):
        Config(pattern="1:4", sparsity=0.9)
    assert Config(pattern="1:4", sparsity=0.75).pattern == "1:4"
    # pattern was added after runs were recorded: at its default it is not in the run id
    spec = make_spec("prune_unstructured", "enet", sparsity=0.75)
    assert "pattern" not in spec.stages[0]["config"]
    nm = make_spec("prune_unstructured", "enet", pattern="2:4")
    assert nm.stages[0]["config"]["pattern"] == "2:4" and nm.run_id != spec.run_id
    assert _method(pattern="2:4").describe() == "pattern=2:4"
