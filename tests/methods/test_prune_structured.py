"""prune_structured: every zoo model still runs at several input sizes after channels are
removed, coupled layers lose the same channels (removing dead channels leaves the output
unchanged), and the artifact rebuilds the pruned shapes exactly."""

from __future__ import annotations

import pytest
import torch
import torch_pruning as tp

from bench.complexity import count_madds
from bench.config import ConfigError
from bench.export import export_model, load_model
from bench.method import expand_methods
from bench.verify import verify_record
from methods.prune_structured import (
    ROOT_TYPES,
    classifier_layers,
    module_shapes,
    no_inplace,
    unsupported_groups,
)
from models import cpu_default_models, create_model, list_models

SIZES = [(64, 64), (97, 131), (128, 96)]


def _stage(**kw):
    (stage,) = expand_methods("prune_structured", kw)[0].stages()
    return stage


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _kill_channels(model, num_classes: int, ratio: float, seed: int = 0) -> None:
    """Zero, in every channel group, as many channels as `ratio` local pruning removes:
    the producers' weights/BN and the consumers' input weights. Removing exactly those
    channels must then leave the function unchanged; removing any other would not."""
    g = torch.Generator().manual_seed(seed)
    example = torch.zeros(1, 3, 64, 64)
    with no_inplace(model):
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    groups = list(graph.get_all_groups(ignored_layers=classifier_layers(model, num_classes),
                                       root_module_types=ROOT_TYPES))
    with torch.no_grad():
        for full in groups:
            root, fn = full[0][0].target.module, full[0][0].handler
            n = len(full[0][1])
            k = n - int(n * (1 - ratio))
            if k == 0:
                continue
            dead = torch.randperm(n, generator=g)[:k].tolist()
            for dep, idxs in graph.get_pruning_group(root, fn, dead):
                layer, idxs = dep.target.module, [int(i) for i in idxs]
                if not isinstance(layer, torch.nn.Module) or not hasattr(layer, "weight"):
                    continue
                out = graph.is_out_channel_pruning_fn(dep.handler)
                transposed = getattr(layer, "transposed", False)
                if isinstance(layer, torch.nn.modules.conv._ConvNd) and layer.groups > 1:
                    if not out:
                        continue  # depthwise: the out-channel entry zeroes it
                    axis = 0
                elif layer.weight.dim() == 1:
                    axis = 0
                else:
                    axis = (1 if transposed else 0) if out else (0 if transposed else 1)
                if max(idxs) >= layer.weight.shape[axis]:
                    continue  # a group torch-pruning maps wrongly (ENet's trunk): never pruned
                layer.weight.index_fill_(axis, torch.tensor(idxs), 0.0)
                if out and getattr(layer, "bias", None) is not None:
                    layer.bias.index_fill_(0, torch.tensor(idxs), 0.0)


def _check_model(name: str, make_ctx):
    ctx = make_ctx("prune_structured", name)
    model = ctx.build_model().eval()
    _kill_channels(model, ctx.num_classes, 0.3)
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model(x)
    before = _params(model)
    stage = _stage(ratio=0.3)
    pruned = stage.method.compress(ctx, model).eval()
    info = ctx.extras["prune_structured"]
    assert _params(pruned) < 0.9 * before
    assert info["params_after"] == _params(pruned)
    for m in classifier_layers(pruned, ctx.num_classes):
        assert getattr(m, "out_channels", getattr(m, "out_features", None)) == ctx.num_classes
    with torch.no_grad():
        # LayerNorm averages over every channel of a token, so removing even dead channels
        # changes its statistics: no equivalence to check there (test_prune_attention.py)
        if not any(isinstance(m, torch.nn.LayerNorm) for m in pruned.modules()):
            assert torch.allclose(pruned(x), reference, atol=1e-4, rtol=1e-4)
        for h, w in SIZES:
            y = pruned(torch.randn(1, 3, h, w))
            assert y.shape == (1, ctx.num_classes, h, w)
    return info


@pytest.mark.parametrize("name", cpu_default_models())
def test_cpu_models_prune_consistently_and_run_at_several_sizes(name, make_ctx):
    info = _check_model(name, make_ctx)
    if name == "enet":  # trunk channels are tied to max-unpooling indices: kept whole
        kept = info["groups_kept_unsupported"]
        assert 0 < len(kept) < info["groups"] // 4
        assert any("indices" in k["error"] for k in kept)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in list_models() if n not in cpu_default_models()])
def test_every_other_zoo_model_prunes_and_runs(name, make_ctx):
    _check_model(name, make_ctx)


def test_probes_leave_the_model_untouched(make_ctx):
    ctx = make_ctx("prune_structured", "enet")
    model = ctx.build_model().eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = [id(p) for p in model.parameters()]
    with no_inplace(model):
        graph = tp.DependencyGraph().build_dependency(model, torch.zeros(1, 3, 64, 64))
    groups = list(graph.get_all_groups(ignored_layers=classifier_layers(model, 9),
                                       root_module_types=ROOT_TYPES))
    bad = unsupported_groups(model, graph, groups)
    assert len(bad) == 3  # ENet: the three trunk widths (64, 128 and 16 channels)
    assert [id(p) for p in model.parameters()] == params
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_artifact_rebuilds_the_pruned_shapes_exactly(make_ctx, tmp_path):
    ctx = make_ctx("prune_structured", "unet_small", ratio=0.5)
    model = ctx.build_model().eval()
    stage = _stage(ratio=0.5, importance="l2", global_pruning=True)
    stage.method.compress(ctx, model)
    meta = stage.method.artifact_meta(model)
    fresh = module_shapes(ctx.build_model())
    assert meta["modules"] and all(fresh[n] != s for n, s in meta["modules"].items())
    assert meta["modules"]["net.head"]["attrs"]["out_channels"] == ctx.num_classes
    path = export_model(model, tmp_path / "m", model_name="unet_small",
                        num_classes=ctx.num_classes, model_kwargs={}, stages=[stage], ctx=ctx)
    assert path.suffix == ".safetensors"  # a smaller dense model: plain safetensors
    loaded, header, stages = load_model(path)
    x = torch.randn(1, 3, 80, 72)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert stages[0].method.check(loaded, header["stages"][0]["meta"]) == []
    assert _params(loaded) == meta["params"]


def test_runner_fine_tunes_iteratively_and_lowers_params_and_madds(make_spec, run_spec,
                                                                  results):
    spec = make_spec("prune_structured", "unet_small", ratio=0.5, importance="taylor",
                     iterative_steps=2)
    rec = run_spec(spec)
    assert rec["status"] == "ok", rec.get("error")
    mt = rec["metrics"]
    base = count_madds(create_model("unet_small", num_classes=9), tuple(mt["input_shape"]))
    assert mt["params"] < 0.4 * base.params  # ~half the channels: ~1/4 of conv weights
    assert rec["extras"]["prune_structured"]["params_before"] == base.params
    assert mt["madds"] < 0.4 * base.madds
    assert mt["sparsity"] == 0.0  # a smaller dense model, not a sparse one
    assert rec["extras"]["prune_structured"]["finetune_epochs_per_step"] == [0, 1]
    assert verify_record(rec, results) == []


def test_bad_settings_name_the_valid_choices():
    with pytest.raises(ConfigError, match="valid: one of l1, l2, bn_scale, taylor, lamp, fpgm$"):
        expand_methods("prune_structured", {"importance": "random"})
    with pytest.raises(ConfigError, match=r"ratio=1.0; valid: a number in \[0, 1\)"):
        _stage(ratio=1.0)
    with pytest.raises(ConfigError, match="iterative_steps=0; valid: an integer >= 1"):
        _stage(iterative_steps=0)


def test_ignore_pattern_keeps_layers_and_typos_fail(make_ctx):
    ctx = make_ctx("prune_structured", "unet_small")
    model = ctx.build_model().eval()
    width = model.get_submodule("net.inc.0").out_channels
    _stage(ratio=0.5, ignore=["net.inc.*"]).method.compress(ctx, model)
    assert model.get_submodule("net.inc.0").out_channels == width
    assert model.get_submodule("net.down.0.0").out_channels < 2 * width
    with pytest.raises(ConfigError, match="ignore='net.incc\\*'; valid: patterns that match"):
        _stage(ignore=["net.incc*"]).method.compress(ctx, ctx.build_model())


TINY_UNET = {"base_channels": 4, "depth": 2}


def _randomise_bn(model, seed: int = 0) -> None:
    """Distinct BatchNorm scales, as training leaves them (fresh ones are all 1: ties)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.weight.shape, generator=g) + 0.2


def _pruned(make_ctx, model_name, kwargs, **sets):
    ctx = make_ctx("prune_structured", model_name, model_kwargs=kwargs, **sets)
    model = ctx.build_model().eval()
    _randomise_bn(model)
    before = {n: m.out_channels for n, m in model.named_modules()
              if isinstance(m, torch.nn.Conv2d)}
    _stage(**sets).method.compress(ctx, model)
    return model, before, ctx.extras["prune_structured"]


@pytest.mark.parametrize("importance", ["l1", "l2", "bn_scale", "taylor", "lamp", "fpgm"])
@pytest.mark.parametrize("model_name,kwargs", [("unet_small", TINY_UNET), ("enet", {})])
def test_every_criterion_prunes_to_the_ratio(make_ctx, importance, model_name, kwargs):
    """Local ranking at ratio 0.5: every conv that loses channels loses half of them, most
    do, and the model still runs at odd sizes (each criterion only reorders channels)."""
    model, before, info = _pruned(make_ctx, model_name, kwargs, ratio=0.5,
                                  importance=importance)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    halved = [n for n, m in convs.items() if m.out_channels == before[n] - before[n] // 2
              and before[n] > 1]
    assert all(m.out_channels in (before[n], before[n] - before[n] // 2)
               for n, m in convs.items())
    assert len(halved) > 0.6 * len(convs), (len(halved), len(convs))
    assert info["param_ratio"] < 0.5
    with torch.no_grad():
        assert model(torch.randn(1, 3, 61, 93)).shape[-2:] == (61, 93)


def test_bn_scale_keeps_the_channels_with_the_largest_scales(make_ctx):
    ctx = make_ctx("prune_structured", "unet_small", model_kwargs=TINY_UNET)
    model = ctx.build_model().eval()
    _randomise_bn(model, seed=3)
    gamma = model.get_submodule("net.inc.1").weight.detach().clone()
    _stage(ratio=0.5, importance="bn_scale").method.compress(ctx, model)
    kept = model.get_submodule("net.inc.1").weight.detach()
    assert torch.equal(kept.sort().values, gamma.sort().values[len(gamma) // 2:])


def test_groups_the_criterion_cannot_score_are_reported_left_whole(make_ctx):
    """bn_scale scores no group without a BatchNorm: U-Net's transposed convolutions stay
    whole, so the record must say its ratio is not the one asked for; l1 prunes them."""
    left = {}
    for importance in ("l1", "bn_scale"):
        ctx = make_ctx("prune_structured", "unet_small", model_kwargs=TINY_UNET)
        model = ctx.build_model().eval()
        _stage(ratio=0.5, importance=importance).method.compress(ctx, model)
        left[importance] = ctx.extras["prune_structured"]["groups_left_whole"]
    assert left["l1"] == []
    assert left["bn_scale"] and all(".up." in n or n.endswith(".up") for n in left["bn_scale"])


def test_lamp_ranks_as_l2_within_a_group_and_differs_globally(make_ctx):
    """LAMP's normalisation is monotone within a layer: ranking locally it removes the
    channels l2 removes (so its sweep row ranks globally, where it changes the result)."""
    def state(**sets):
        model, _, _ = _pruned(make_ctx, "unet_small", TINY_UNET, ratio=0.5, **sets)
        return model.state_dict()

    lamp, l2 = state(importance="lamp"), state(importance="l2")
    assert all(torch.equal(lamp[k], l2[k]) for k in l2)
    lamp_g, l2_g = state(importance="lamp", global_pruning=True), \
        state(importance="l2", global_pruning=True)
    assert any(lamp_g[k].shape != l2_g[k].shape for k in l2_g)


def test_fpgm_removes_other_channels_than_the_norm(make_ctx):
    fpgm, _, _ = _pruned(make_ctx, "unet_small", TINY_UNET, ratio=0.5, importance="fpgm")
    l2, _, _ = _pruned(make_ctx, "unet_small", TINY_UNET, ratio=0.5, importance="l2")
    a, b = fpgm.state_dict(), l2.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in b if a[k].shape == b[k].shape)


def test_the_criteria_sweep_keeps_the_existing_rows_and_labels_each_criterion():
    variants = expand_methods("prune_structured", {})
    assert len(variants) == 1  # a single method expands to its defaults
    labels = [v.describe() for v in expand_methods("prune", {})
              if v.spec == "prune_structured"]
    assert labels[:2] == ["ratio=0.25,l1", "ratio=0.5,l1"]  # the rows recorded before
    assert {"ratio=0.5,bn_scale", "ratio=0.5,taylor", "ratio=0.5,fpgm",
            "ratio=0.5,lamp,global", "ratio=0.5,l2,global"} <= set(labels)
