"""lowrank: each factorisation equals the original conv at full rank (strides, dilation,
padding, bias included); the ranks meet the MAdds target or the energy threshold; the
artifact stores the factors and decodes to a model with the same outputs, fewer MAdds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.complexity import count_madds
from bench.config import ConfigError
from bench.export import export_model, load_model
from bench.method import NotApplicable, expand_methods
from methods.factorize.decompose import (
    FactorizedConv,
    factorize,
    rank_limits,
    spectra,
)
from methods.factorize.ranks import energy_rank, retained

TINY_UNET = {"base_channels": 4, "depth": 2}
CONVS = [  # (c_in, c_out, kernel, stride, padding, dilation, bias)
    (6, 5, (3, 3), 1, 1, 1, True),
    (4, 7, (3, 3), 2, 1, 1, False),
    (5, 5, (3, 3), 1, 4, 4, True),
    (3, 4, (5, 3), (2, 1), (2, 1), (1, 2), True),
    (4, 6, (2, 2), 2, 0, 1, False),
    (8, 3, (1, 1), 1, 0, 1, True),
    (4, 4, (5, 1), 1, (2, 0), 1, False),
]


def _stage(**kw):
    (v,) = expand_methods("lowrank", kw)
    (stage,) = v.stages()
    return stage


@pytest.mark.parametrize("scheme", ["spatial", "channel", "tucker"])
@pytest.mark.parametrize("spec", CONVS, ids=lambda s: f"{s[0]}-{s[1]}-{s[2]}-{s[3]}-{s[5]}")
def test_full_rank_factorisation_equals_the_conv(scheme, spec):
    c_in, c_out, k, stride, pad, dil, bias = spec
    torch.manual_seed(0)
    conv = nn.Conv2d(c_in, c_out, k, stride, pad, dil, bias=bias).double()
    if scheme != "channel" and min(conv.kernel_size) == 1:
        pytest.skip("spatial/tucker apply to k x k kernels")
    fac = factorize(conv, scheme, rank_limits(conv, scheme))
    x = torch.randn(2, c_in, 13, 17, dtype=torch.double)
    with torch.no_grad():
        assert torch.allclose(fac(x), conv(x), atol=1e-10)
    if scheme == "spatial":
        assert [tuple(c.kernel_size) for c in fac] == [(k[0], 1), (1, k[1])]


def test_truncation_error_is_the_dropped_energy():
    """Spatial SVD at rank r is the best rank-r approximation of the rearranged weight:
    the squared error of the composed kernel is the energy of the dropped values."""
    torch.manual_seed(1)
    conv = nn.Conv2d(6, 8, 3, padding=1, bias=False).double()
    (s,) = spectra(conv, "spatial")
    fac = factorize(conv, "spatial", (4,))
    a, b = fac[0].weight.detach(), fac[1].weight.detach()  # (r, i, kh, 1), (o, r, 1, kw)
    composed = torch.einsum("riy,orx->oiyx", a[..., 0], b[:, :, 0])
    err = float(((composed - conv.weight.detach()) ** 2).sum())
    assert err == pytest.approx(float((s[4:] ** 2).sum()), rel=1e-9)
    assert retained(s, 4) == pytest.approx(1 - err / float((s ** 2).sum()), rel=1e-9)


def test_energy_rank_is_the_smallest_rank_holding_the_energy():
    s = torch.tensor([3.0, 2.0, 1.0, 0.0])  # energies 9, 4, 1 of 14
    assert [energy_rank(s, e) for e in (0.1, 9 / 14, 0.65, 13 / 14, 0.95, 1.0)] == \
        [1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("model_name,kwargs", [("unet_small", TINY_UNET), ("enet", {})])
@pytest.mark.parametrize("ratio", [0.33, 0.5])
def test_ranks_meet_the_madds_target(make_ctx, model_name, kwargs, ratio):
    ctx = make_ctx("lowrank", model_name, model_kwargs=kwargs, ratio=ratio)
    model = ctx.build_model().eval()
    shape = tuple(ctx.input_shape)
    before = count_madds(model, shape).madds
    _stage(ratio=ratio).method.compress(ctx, model)
    info = ctx.extras["lowrank"]
    after = count_madds(model, shape).madds
    assert after == info["madds_after"] <= (1 - ratio) * before
    assert after > (1 - ratio - 0.1) * before  # the largest threshold: not far below
    assert info["layers"] and all(isinstance(model.get_submodule(n), FactorizedConv)
                                  for n in info["layers"])
    assert all(not isinstance(model.get_submodule(n), FactorizedConv)
               for n in info["kept_whole"])


def test_energy_target_keeps_that_energy_in_every_layer(make_ctx):
    ctx = make_ctx("lowrank", "unet_small", model_kwargs=TINY_UNET, energy=0.6, kxk="tucker")
    model = ctx.build_model().eval()
    _stage(energy=0.6, kxk="tucker").method.compress(ctx, model)
    layers = ctx.extras["lowrank"]["layers"]
    assert layers and all(min(rec["energy"]) >= 0.6 for rec in layers.values())
    assert {rec["scheme"] for rec in layers.values()} <= {"tucker", "channel"}
    assert any(rec["scheme"] == "tucker" and len(rec["ranks"]) == 2 for rec in layers.values())


def test_an_unreachable_ratio_is_not_applicable(make_ctx):
    ctx = make_ctx("lowrank", "unet_small", model_kwargs=TINY_UNET, ratio=0.99)
    with pytest.raises(NotApplicable, match="rank 1 in every factorisable layer"):
        _stage(ratio=0.99).method.compress(ctx, ctx.build_model())


def test_artifact_stores_the_factors_and_decodes_to_the_same_outputs(make_ctx, tmp_path):
    ctx = make_ctx("lowrank", "enet", ratio=0.5)
    model = ctx.build_model().eval()
    stage = _stage(ratio=0.5, kxk="tucker")
    stage.method.compress(ctx, model)
    meta = stage.method.artifact_meta(model)
    assert meta["layers"]
    path = export_model(model, tmp_path / "m", model_name="enet", num_classes=ctx.num_classes,
                        model_kwargs={}, stages=[stage], ctx=ctx)
    loaded, header, stages = load_model(path)
    x = torch.randn(1, 3, 72, 88)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))
    assert stages[0].method.check(loaded, header["stages"][0]["meta"]) == []
    shape = tuple(ctx.input_shape)
    assert count_madds(loaded, shape).madds <= 0.5 * count_madds(ctx.build_model(), shape).madds
    # a tampered declaration is caught
    bad = {**meta, "layers": {**meta["layers"]}}
    name = next(iter(bad["layers"]))
    bad["layers"][name] = {**bad["layers"][name], "ranks": [1, 1]}
    assert any(name in p for p in stages[0].method.check(loaded, bad))


def test_ratio_and_energy_are_one_target():
    assert _stage().method.config.target_ratio == 0.5  # the default target
    assert _stage(energy=0.9).method.config.target_ratio is None
    with pytest.raises(ConfigError, match="null when ratio is set"):
        _stage(ratio=0.5, energy=0.9)
    assert _stage(energy=0.9, kxk="channel").method.describe() == "energy=0.9,channel"
