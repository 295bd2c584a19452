"""The sparse artifact encodings (methods/codecs/sparse.py): exact round trips through the real
container, sizes that really shrink with sparsity, and corrupt input rejected."""

from __future__ import annotations

import pytest
import torch

from bench.artifact import ArtifactError, decode_tensor, dense, read_artifact, write_artifact
from methods.codecs.sparse import (
    BITMASK,
    RELIDX,
    encode_bitmask,
    encode_relidx,
    encode_sparse,
    encoded_bytes,
    sparsify_state,
)


def _sparse_tensor(shape, density, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g)
    keep = torch.rand(shape, generator=g) < density
    return (t * keep).to(dtype)


ENCODERS = {
    "bitmask": encode_bitmask,
    "relidx4": lambda t: encode_relidx(t, 4),
    "relidx8": lambda t: encode_relidx(t, 8),
    "auto": encode_sparse,
}


@pytest.mark.parametrize("encoder", list(ENCODERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape,density", [((0,), 0.5), ((1,), 1.0), ((7,), 0.0),
                                           ((3, 5, 3, 3), 0.5), ((64, 64), 0.02),
                                           ((33, 17), 1.0)])
def test_round_trip_is_exact(encoder, dtype, shape, density):
    t = _sparse_tensor(shape, density, dtype)
    back = decode_tensor(ENCODERS[encoder](t))
    assert back.dtype == t.dtype and back.shape == t.shape
    assert torch.equal(back, t)


def test_relative_index_bridges_long_gaps_with_fillers():
    t = torch.zeros(1000)
    t[[0, 17, 18, 500, 999]] = torch.tensor([1.0, -2.0, 3.0, 4.0, 5.0])
    for bits in (4, 8):
        et = encode_relidx(t, bits)
        span = 1 << bits
        gaps = [1, 17, 1, 482, 499]  # position differences, first from -1
        assert et.params["entries"] == sum((g - 1) // span + 1 for g in gaps)
        assert torch.equal(decode_tensor(et), t)


def test_sizes_shrink_with_sparsity_and_never_exceed_dense():
    dense_bytes = 256 * 256 * 4
    t90 = _sparse_tensor((256, 256), 0.10)
    et = encode_sparse(t90)
    assert et.encoding in (BITMASK, RELIDX)
    # bitmask: n/8 + 0.1 n * 4 bytes = 0.525 n; relative 8-bit index: ~0.5 n
    assert encoded_bytes(et) < dense_bytes / 6
    t50 = _sparse_tensor((256, 256), 0.5)
    assert dense_bytes / 2.2 < encoded_bytes(encode_sparse(t50)) < dense_bytes / 1.7
    full = _sparse_tensor((256, 256), 1.0)
    assert encode_sparse(full).encoding == "dense"
    assert encode_sparse(torch.arange(10)).encoding == "dense"  # integers stay dense


def test_container_round_trip_and_corruption(tmp_path):
    state = {"a": _sparse_tensor((32, 16, 3, 3), 0.1), "b": torch.randn(16),
             "n": torch.tensor(7)}
    tensors = sparsify_state({k: dense(v) for k, v in state.items()})
    assert tensors["a"].encoding in (BITMASK, RELIDX) and tensors["b"].encoding == "dense"
    path = write_artifact(tmp_path / "m", {"model": {}}, tensors)
    assert path.suffix == ".sbz"
    _, back = read_artifact(path)
    assert all(torch.equal(back[k], state[k]) for k in state)

    et = encode_bitmask(state["a"])
    et.blobs["values"].data = et.blobs["values"].data[:-4]  # one value short
    with pytest.raises(ArtifactError):
        decode_tensor(et)
    et = encode_relidx(state["a"], 4)
    et.params["entries"] += 10
    with pytest.raises(ArtifactError):
        decode_tensor(et)


def test_unknown_format_names_the_choices():
    with pytest.raises(ValueError, match="auto, bitmask, relidx"):
        encode_sparse(torch.zeros(4), "csr")
