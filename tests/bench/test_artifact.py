import struct

import pytest
import torch

from bench.artifact import (
    ArtifactError,
    Blob,
    EncodedTensor,
    encode_state,
    read_artifact,
    register_encoding,
    write_artifact,
)


def _state():
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(4, 3, 3, 3, generator=g), "b": torch.randn(4, generator=g),
            "n": torch.tensor(7, dtype=torch.int64)}


def test_dense_state_is_written_as_safetensors_and_round_trips(tmp_path):
    state = _state()
    path = write_artifact(tmp_path / "m", {"model": {"name": "x"}}, encode_state(state))
    assert path.suffix == ".safetensors"
    header, back = read_artifact(path)
    assert header == {"model": {"name": "x"}}
    for k in state:
        assert torch.equal(back[k], state[k])


@register_encoding("test_halves")
def _decode_halves(et, blobs):
    return torch.frombuffer(bytearray(blobs["h"]), dtype=torch.float16).float().reshape(et.shape)


def test_custom_encoding_goes_to_container_and_round_trips(tmp_path):
    state = _state()
    tensors = encode_state(state)
    w16 = state["w"].half()
    tensors["w"] = EncodedTensor("test_halves", tuple(w16.shape), "float32",
                                 blobs={"h": Blob(w16.numpy().tobytes())})
    path = write_artifact(tmp_path / "m", {"model": {"name": "x"}}, tensors)
    assert path.suffix == ".sbz"
    header, back = read_artifact(path)
    assert header["model"] == {"name": "x"}
    assert torch.equal(back["w"], w16.float())
    assert torch.equal(back["b"], state["b"])
    # the half-precision tensor really is stored in half the bytes
    assert path.stat().st_size < 4 * state["w"].numel() + 4 * 4 + 8 + 2048


@pytest.mark.parametrize("suffix", ["safetensors", "sbz"])
def test_truncated_and_corrupted_files_raise_artifact_error(tmp_path, suffix):
    tensors = encode_state(_state())
    if suffix == "sbz":
        w16 = _state()["w"].half()
        tensors["w"] = EncodedTensor("test_halves", tuple(w16.shape), "float32",
                                     blobs={"h": Blob(w16.numpy().tobytes())})
    path = write_artifact(tmp_path / "m", {"model": {}}, tensors)
    data = path.read_bytes()
    for cut in (0, 5, 20, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(ArtifactError):
            read_artifact(path)
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF  # inside the payload
    path.write_bytes(bytes(flipped))
    if suffix == "sbz":
        with pytest.raises(ArtifactError, match="checksum"):
            read_artifact(path)


def test_wrong_format_version_is_reported(tmp_path):
    p = tmp_path / "m.sbz"
    p.write_bytes(struct.pack("<8sIQI", b"SEGBENCH", 99, 2, 0) + b"{}")
    with pytest.raises(ArtifactError, match="format version 99"):
        read_artifact(p)


def test_missing_file_is_an_artifact_error(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        read_artifact(tmp_path / "nope.sbz")


@pytest.mark.parametrize("container", [False, True])
def test_shared_weights_are_stored_once_and_come_back_shared(tmp_path, container):
    """KSAC shares one kernel between branches: the artifact must not store it twice."""
    from torch import nn

    from bench.artifact import state_bytes_dense

    conv = nn.Conv2d(16, 16, 3)
    model = nn.ModuleDict({"a": conv, "b": nn.Conv2d(16, 16, 3)})
    model["b"].weight = conv.weight
    state = model.state_dict()
    tensors = encode_state(state)
    assert tensors["b.weight"].encoding == "alias"
    if container:
        w16 = state["a.bias"].half()
        tensors["a.bias"] = EncodedTensor("test_halves", tuple(w16.shape), "float32",
                                          blobs={"h": Blob(w16.numpy().tobytes())})
    path = write_artifact(tmp_path / "m", {}, tensors)
    assert path.stat().st_size < 4 * 16 * 16 * 9 * 2  # one copy of the kernel, not two
    assert state_bytes_dense(state) < 4 * 16 * 16 * 9 * 2
    _, back = read_artifact(path)
    assert torch.equal(back["b.weight"], state["a.weight"])
    assert back["b.weight"].data_ptr() == back["a.weight"].data_ptr()
