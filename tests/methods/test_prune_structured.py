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
    with pytest.raises(ConfigError, match="valid: one of l1, l2, bn_scale, taylor"):
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
