"""k-means weight sharing: Lloyd fixed points, tied fine-tuning whose centroid gradient is
the sum of its weights' gradients, zeros of a pruning stage kept, the codebook encodings,
and full runs (kmeans alone, and Deep Compression) that `verify` accepts."""

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.artifact import decode_tensor
from bench.config import ConfigError
from bench.export import load_model
from bench.facts import FactLog
from bench.method import METHODS, PIPELINES, expand_methods
from bench.runner import run_one
from bench.verify import verify_record
from methods.codecs.codebook import _gap_entries, encode_codebook
from methods.kmeans import kmeans_1d, share_weights


@pytest.fixture(scope="module")
def shared_results(tmp_path_factory) -> Path:
    """One results directory per module, so the baseline trains once."""
    return tmp_path_factory.mktemp("kmeans-results")


def _run(spec, results):
    rec = run_one(spec, results=results, device=torch.device("cpu"))
    assert rec["status"] == "ok", rec.get("traceback")
    return rec


def test_lloyd_result_is_a_fixed_point():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(500, generator=g) * 0.1 + m for m in (-2.0, 0.0, 3.0)])
    c, assign = kmeans_1d(x, 3)
    assert torch.allclose(c, torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64), atol=0.05)
    for k in range(3):  # each centroid is the mean of its members, each member nearest
        assert torch.isclose(x[assign == k].double().mean(), c[k])
    nearest = (x.double()[:, None] - c[None, :]).abs().argmin(1)
    assert torch.equal(nearest, assign)


def test_bad_settings_name_the_valid_choices():
    with pytest.raises(ConfigError, match="valid: one of linear, density, random"):
        expand_methods("kmeans", {"init": "kmeans++"})
    with pytest.raises(ConfigError, match=r"an integer in \[1, 16\]"):
        expand_methods("kmeans", {"bits": 0})


def _tied_layer(bits=2):
    g = torch.Generator().manual_seed(1)
    conv = torch.nn.Conv2d(4, 6, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        conv.weight[conv.weight.abs() < 0.6] = 0  # an earlier pruning stage
    zeros = conv.weight == 0
    q, info = share_weights(conv.weight, bits, "linear", 20)
    with torch.no_grad():
        conv.weight.copy_(q)
    return conv, info, zeros, g


def test_centroid_gradient_is_the_sum_of_its_weights_gradients():
    conv, info, zeros, g = _tied_layer()
    x = torch.randn(2, 4, 8, 8, generator=g)
    conv(x).square().sum().backward()
    plain = conv.weight.grad.clone().reshape(-1)
    conv.weight.grad = None
    handle = conv.weight.register_hook(info.shared_grad)
    conv(x).square().sum().backward()
    handle.remove()
    got = conv.weight.grad.reshape(-1)
    for k in range(1, info.clusters):  # cluster 0: the pruned zeros, frozen
        members = info.index == k
        if members.any():
            assert torch.allclose(got[members], plain[members].sum().expand(int(members.sum())))
    assert (got[info.index == 0] == 0).all()


def test_weights_stay_tied_and_zeros_stay_zero_through_sgd():
    conv, info, zeros, g = _tied_layer(bits=2)
    conv.weight.register_hook(info.shared_grad)
    opt = torch.optim.SGD(conv.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    before = torch.unique(conv.weight.detach())
    for _ in range(5):
        opt.zero_grad()
        conv(torch.randn(2, 4, 8, 8, generator=g)).square().mean().backward()
        opt.step()
        info.retie(conv.weight)
    w = conv.weight.detach()
    assert torch.unique(w).numel() <= 4  # 2**bits, the zero included
    assert (w[zeros] == 0).all() and (w[~zeros] != 0).all()
    assert not torch.equal(torch.unique(w), before)  # the centroids did move


@pytest.mark.parametrize("density", [1.0, 0.3, 0.02])
def test_codebook_encoding_round_trips_bit_exactly(density):
    g = torch.Generator().manual_seed(2)
    values = torch.tensor([-0.3, -0.05, 0.07, 0.2, 0.45])
    w = values[torch.randint(0, 5, (32, 16, 3, 3), generator=g)]
    w = w * (torch.rand(w.shape, generator=g) < density)
    et = encode_codebook(w, 3)
    assert et.params["layout"] == ("dense" if density > 0.5 else "sparse")
    assert torch.equal(decode_tensor(et), w)
    raw = sum(len(b.data) for b in et.blobs.values())
    assert raw < w.numel() * 3 / 8 + 64  # never worse than 3-bit indices plus the codebook


def test_relative_index_gaps_overflow_into_filler_entries():
    positions = np.array([0, 3, 40, 41])
    gaps, real = _gap_entries(positions, 2)  # gaps up to 3; the 36-zero gap needs fillers
    assert real.sum() == 4 and len(gaps) == 4 + 36 // 4
    assert (np.cumsum(gaps + 1) - 1)[real].tolist() == positions.tolist()


def test_kmeans_run_shares_at_most_2_to_the_bits_values_per_layer(make_spec, shared_results):
    rec = _run(make_spec("kmeans", "enet", bits=3, first_last_bits=4), shared_results)
    model, header, stages = load_model(shared_results / rec["artifact"])
    meta = header["stages"][0]["meta"]
    assert len(meta["layers"]) == rec["extras"]["kmeans"]["layers"] > 50
    assert set(meta["wide"].values()) == {4} and len(meta["wide"]) == 2
    for name in meta["layers"]:
        bits = meta["wide"].get(name, 3)
        assert torch.unique(model.get_submodule(name).weight).numel() <= 2**bits
    assert stages[0].method.check(model, meta) == []
    assert verify_record(rec, shared_results) == []
    # ~3 bits a weight against 32: the file shrinks well beyond 3x even with the header
    assert rec["metrics"]["compression_ratio"] > 3


def test_check_reports_a_layer_with_too_many_values():
    km = METHODS.get("kmeans")()
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    assert km.check(conv, {"bits": 3, "layers": ["0"], "wide": {}}) != []


def test_deep_compression_preset_is_the_written_out_pipeline(make_spec, shared_results):
    if "prune_unstructured" not in METHODS:
        pytest.skip("prune_unstructured is not installed")
    spec, configs = PIPELINES.get("deep_compression")
    assert spec == "prune_unstructured+kmeans+huffman"
    (preset,) = expand_methods("deep_compression")
    (written,) = expand_methods(spec, {"prune_unstructured.sparsity": configs[0]["sparsity"],
                                       "kmeans.bits": 8, "first_last_bits": 8})
    assert preset.resolved() == written.resolved()

    rec = _run(make_spec("deep_compression", "enet"), shared_results)
    assert verify_record(rec, shared_results) == []  # sparsity, values per layer, digest
    model, header, stages = load_model(shared_results / rec["artifact"])
    assert [s.name for s in stages] == spec.split("+")
    ex = rec["extras"]
    assert ex["kmeans"]["sparse"] > 0  # pruned layers use relative indexing
    assert ex["huffman"]["payload_bytes_after"] < ex["huffman"]["payload_bytes_before"]
    assert rec["metrics"]["sparsity"] > 0.5
    assert rec["metrics"]["compression_ratio"] > 3
    for name in header["stages"][1]["meta"]["layers"]:
        assert torch.unique(model.get_submodule(name).weight).numel() <= 256


class _Ctx(FactLog):
    """What k-means reads of a run: the input shape, the seed; and where it reports."""

    def __init__(self, input_shape):
        super().__init__()
        self.input_shape, self.seed = input_shape, 0


def test_kmeans_before_encode_keeps_pruned_zeros_without_the_pruning_plugin():
    """Zeros are found in the weights themselves, whoever made them."""
    km = METHODS.get("kmeans")(METHODS.get("kmeans").Config(bits=2, first_last_bits=2))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 4, 1))
    with torch.no_grad():
        model[0].weight[:, :2] = 0
    ctx = _Ctx((1, 3, 8, 8))
    km.compress(ctx, model)
    assert (model[0].weight[:, :2] == 0).all()
    km.finalize(ctx, model)
    tensors = km.encode(ctx, model, {"0.weight": None, "1.weight": None})
    assert torch.equal(decode_tensor(tensors["0.weight"]), model[0].weight.detach())
    assert tensors["0.weight"].params["layout"] in ("dense", "sparse")


def test_a_kernel_shared_by_two_layers_is_clustered_and_stored_once(tmp_path):
    from bench.artifact import encode_state, read_artifact, write_artifact

    km = METHODS.get("kmeans")(METHODS.get("kmeans").Config(bits=2, first_last_bits=2))
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1),
                                torch.nn.Conv2d(4, 4, 3, padding=1))
    model[1].weight = model[0].weight  # one kernel, two layers (as in KSAC)
    ctx = _Ctx((1, 4, 8, 8))
    km.compress(ctx, model)
    assert list(km.layer_bits) == ["0"] and len(km._shared) == 1
    km.finalize(ctx, model)
    tensors = km.encode(ctx, model, encode_state(model.state_dict()))
    assert tensors["0.weight"].encoding == "codebook"
    assert tensors["1.weight"].encoding == "alias"
    _, state = read_artifact(write_artifact(tmp_path / "m", {}, tensors))
    assert torch.equal(state["1.weight"], model[0].weight.detach())
