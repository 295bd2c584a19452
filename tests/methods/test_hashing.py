"""HashedNets: a fixed seeded hash, weights generated from K buckets with gradients
accumulated per bucket, free parameters = sum of K, and artifacts that rebuild the same
network from the buckets and the seed alone."""

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.config import ConfigError
from bench.export import export_model, load_model
from bench.facts import FactLog
from bench.method import METHODS, Stage, expand_methods
from bench.runner import run_one
from bench.verify import verify_record
from methods.hashing import HashedWeight, hash_layer, hashed_buckets


@pytest.fixture(scope="module")
def shared_results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hashing-results")


def test_hash_is_fixed_seeded_and_spreads_evenly():
    idx, sign = hash_layer(20_000, 100, seed=0, layer="a.conv")
    idx2, sign2 = hash_layer(20_000, 100, seed=0, layer="a.conv")
    assert np.array_equal(idx, idx2) and np.array_equal(sign, sign2)
    assert idx.min() >= 0 and idx.max() < 100 and set(np.unique(sign)) == {-1.0, 1.0}
    load = np.bincount(idx, minlength=100)
    assert load.min() > 140 and load.max() < 260  # ~200 each, no bucket starved
    assert abs(sign.mean()) < 0.05
    other_layer, _ = hash_layer(20_000, 100, seed=0, layer="b.conv")
    other_seed, _ = hash_layer(20_000, 100, seed=1, layer="a.conv")
    assert (idx != other_layer).mean() > 0.9 and (idx != other_seed).mean() > 0.9


def test_virtual_weight_is_sign_times_bucket_and_gradients_accumulate_per_bucket():
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(4, 8, 3, bias=False)
    dense = torch.randn(conv.weight.shape, generator=g)
    with torch.no_grad():
        conv.weight.copy_(dense)
    p = HashedWeight(tuple(conv.weight.shape), 37, 5, "layer")
    torch.nn.utils.parametrize.register_parametrization(conv, "weight", p)
    w = conv.parametrizations.weight.original
    assert w.shape == (37,)
    idx, sign = hash_layer(conv.weight.numel(), 37, 5, "layer")
    idx, sign = torch.from_numpy(idx), torch.from_numpy(sign)
    assert torch.equal(conv.weight.reshape(-1), w.detach()[idx] * sign)
    # initialisation: each bucket is the least-squares fit, the mean of sign * W
    for k in (0, 17, 36):
        assert torch.isclose(w[k], (dense.reshape(-1)[idx == k] * sign[idx == k]).mean())
    x = torch.randn(2, 4, 6, 6, generator=g)
    virtual = conv.weight  # one evaluation of the parametrisation
    loss = torch.nn.functional.conv2d(x, virtual).square().sum()
    grad_v, grad_w = torch.autograd.grad(loss, [virtual, w])
    expect = torch.zeros(37).index_add_(0, idx, grad_v.reshape(-1) * sign)
    assert torch.allclose(grad_w, expect, atol=1e-4)


def test_bad_compression_is_rejected():
    with pytest.raises(ConfigError, match="compression=0.5; valid: a number >= 1"):
        expand_methods("hashing", {"compression": 0.5})


def test_artifact_rebuilds_the_same_network_from_buckets_and_seed(tmp_path):
    from models import create_model

    model = create_model("enet", num_classes=9).eval()
    hashing = METHODS.get("hashing")(METHODS.get("hashing").Config(compression=16, seed=3))
    hashing.compress(FactLog(), model)
    path = export_model(model, tmp_path / "m", model_name="enet", num_classes=9,
                        model_kwargs={}, stages=[Stage(hashing)], ctx=FactLog())
    loaded, header, stages = load_model(path)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    meta = header["stages"][0]["meta"]
    assert stages[0].method.check(loaded, meta) == []
    # the file holds the buckets, not the virtual weights
    assert path.stat().st_size < 4 * sum(meta["layers"].values()) + 4 * 40_000 + 80_000


def test_hashing_run_has_sum_of_k_free_weights(make_spec, shared_results):
    rec = run_one(make_spec("hashing", "enet", compression=8), results=shared_results,
                  device=torch.device("cpu"))
    assert rec["status"] == "ok", rec.get("traceback")
    model, header, stages = load_model(shared_results / rec["artifact"])
    meta = header["stages"][0]["meta"]
    k = meta["layers"]
    free = sum(hashed_buckets(model, n).numel() for n in k)
    assert free == sum(k.values()) == rec["extras"]["hashing"]["buckets"]
    virtual = rec["extras"]["hashing"]["virtual_weights"]
    assert virtual / 8 <= free <= virtual / 8 + len(k)  # K = ceil(numel / 8)
    # the optimiser's parameters: the buckets plus the unhashed BN / PReLU / bias tensors
    others = sum(p.numel() for n, p in model.named_parameters() if "parametrizations" not in n)
    assert rec["metrics"]["params"] == free + others
    assert stages[0].method.check(model, meta) == []
    assert verify_record(rec, shared_results) == []
    assert rec["metrics"]["compression_ratio"] > 3
