"""Format fuzzing of bench/artifact.py: truncated and bit-flipped artifacts must fail with
ArtifactError (never another exception, never a hang) or, where the damage is harmless,
read back exactly the state that was written. Both forms checksum every byte that shapes
the loaded model: payload blobs and the (compressed) header in the container, every tensor
and the segbench metadata in the safetensors form."""

import json
import struct
import zlib

import numpy as np
import pytest
import torch

from bench.artifact import (
    ArtifactError,
    Blob,
    EncodedTensor,
    encode_state,
    read_artifact,
    write_artifact,
)
from bench.facts import FactLog
from methods.codecs.codebook import encode_codebook
from methods.huffman import HuffmanCoding

RNG = np.random.default_rng(0)
HEAD = struct.Struct("<8sIQI")  # magic, version, header length, header CRC32


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    levels = torch.tensor([-0.4, -0.1, 0.05, 0.3])
    shared = levels[torch.randint(0, 4, (16, 8, 3, 3), generator=g)]
    sparse = shared * (torch.rand(shared.shape, generator=g) < 0.1)
    return {"q.weight": shared, "s.weight": sparse, "d.weight": torch.randn(8, 5, generator=g),
            "low.weight": torch.randint(0, 3, (300,), generator=g).float(),
            "empty_q.weight": torch.zeros(0, 3), "n": torch.tensor(7, dtype=torch.int64)}


def _tensors(state) -> dict[str, EncodedTensor]:
    """Every kind of tensor the container holds: dense, both codebook layouts, Huffman
    coded blobs, an empty (codebook) tensor and an integer scalar."""
    tensors = encode_state(state)
    tensors["q.weight"] = encode_codebook(state["q.weight"], 2)
    tensors["s.weight"] = encode_codebook(state["s.weight"], 3)
    tensors["empty_q.weight"] = encode_codebook(state["empty_q.weight"], 3)
    return HuffmanCoding().encode(FactLog(), None, tensors)


@pytest.fixture(scope="module")
def sbz(tmp_path_factory):
    state = _state()
    tensors = _tensors(state)
    assert {et.params.get("layout") for et in tensors.values()} >= {"dense", "sparse"}
    assert any(b.codec == "huffman" for et in tensors.values() for b in et.blobs.values())
    path = write_artifact(tmp_path_factory.mktemp("fuzz") / "m", {"model": {"name": "x"}},
                          tensors)
    assert path.suffix == ".sbz"
    return path, path.read_bytes(), state


def _same(state, back) -> bool:
    return set(state) == set(back) and all(
        back[k].dtype == state[k].dtype and torch.equal(back[k], state[k]) for k in state)


def _outcome(path, data: bytes, state) -> str:
    """'error' (ArtifactError), 'same' (the state as written), 'renamed' (a different key
    set, which load_model's strict load rejects) or 'silent' (other data, no error)."""
    path.write_bytes(data)
    try:
        _, back = read_artifact(path)
    except ArtifactError:
        return "error"
    if set(back) != set(state):
        return "renamed"
    return "same" if _same(state, back) else "silent"


def test_the_fixture_round_trips(sbz):
    path, data, state = sbz
    assert _outcome(path, data, state) == "same"


def test_every_truncation_raises(sbz):
    path, data, state = sbz
    cuts = set(range(64)) | set(np.linspace(64, len(data) - 1, 80).astype(int).tolist())
    for cut in sorted(cuts):
        assert _outcome(path, data[:cut], state) == "error", cut
    path.write_bytes(data)


def test_appended_bytes_raise(sbz):
    path, data, state = sbz
    assert _outcome(path, data + b"\0", state) == "error"
    path.write_bytes(data)


def test_payload_bit_flips_fail_the_checksum(sbz):
    path, data, state = sbz
    hlen = HEAD.unpack_from(data)[2]
    start = HEAD.size + hlen
    for bit in RNG.choice(8 * (len(data) - start), 150, replace=False):
        flipped = bytearray(data)
        flipped[start + bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(flipped))
        with pytest.raises(ArtifactError, match="checksum"):
            read_artifact(path)
    path.write_bytes(data)


def test_every_header_bit_flip_raises(sbz):
    path, data, state = sbz
    hlen = HEAD.unpack_from(data)[2]
    bits = set(range(8 * HEAD.size)) | set(
        (8 * HEAD.size + RNG.choice(8 * hlen, 600, replace=False)).tolist())
    for bit in sorted(bits):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert _outcome(path, bytes(flipped), state) == "error", bit
    path.write_bytes(data)


def test_header_is_compressed(sbz):
    _, data, _ = sbz
    hlen = HEAD.unpack_from(data)[2]
    raw = zlib.decompress(data[HEAD.size : HEAD.size + hlen])
    assert json.loads(raw)["tensors"] and hlen < len(raw)


def test_damage_behind_a_valid_checksum_raises_artifact_error(tmp_path):
    """Corrupt the coded blobs themselves and write them with fresh CRCs, so that the
    decoders (Huffman, codebook) see the damage: ArtifactError or valid data, no crash."""
    state = _state()
    tensors = _tensors(state)
    outcomes = set()
    for name in ("q.weight", "s.weight", "low.weight"):
        for key, blob in tensors[name].blobs.items():
            for trial in range(25):
                raw = bytearray(blob.data)
                if trial % 5 == 4:
                    raw = raw[: len(raw) * trial // 30]
                elif raw:
                    raw[RNG.integers(len(raw))] ^= 1 << int(RNG.integers(8))
                bad = dict(tensors)
                et = tensors[name]
                bad[name] = EncodedTensor(et.encoding, et.shape, et.dtype, et.params,
                                          {**et.blobs, key: Blob(bytes(raw), blob.codec,
                                                                 blob.params)})
                path = write_artifact(tmp_path / "m", {"model": {}}, bad)
                try:
                    read_artifact(path)
                    outcomes.add("read")
                except ArtifactError:
                    outcomes.add("error")
    assert "error" in outcomes


def test_safetensors_payload_bit_flip_is_detected(tmp_path):
    state = _state()
    path = write_artifact(tmp_path / "m", {"model": {}}, encode_state(state))
    assert path.suffix == ".safetensors"
    flipped = bytearray(path.read_bytes())
    flipped[-7] ^= 0x10  # inside the last tensor's data
    assert _outcome(path, bytes(flipped), state) == "error"


def test_header_flip_in_stage_metadata_is_detected(tmp_path):
    from bench.export import export_model, load_model
    from bench.method import METHODS, Stage
    from models import create_model

    model = create_model("enet", num_classes=9).eval()
    cls = METHODS.get("hashing")
    hashing = cls(cls.Config(compression=64, seed=3))
    hashing.compress(FactLog(), model)
    path = export_model(model, tmp_path / "m", model_name="enet", num_classes=9,
                        model_kwargs={}, stages=[Stage(hashing), Stage(HuffmanCoding())],
                        ctx=FactLog())
    data = path.read_bytes()
    magic, version, hlen, crc = HEAD.unpack_from(data)
    header = zlib.decompress(data[HEAD.size : HEAD.size + hlen]).decode()
    at = header.rindex('"seed":3') + len('"seed":')  # the meta's, not the config's
    edited = (header[:at] + "2" + header[at + 1 :]).encode()  # still valid JSON
    head = zlib.compress(edited, 9)  # a consistent header, but not the one the CRC is for
    path.write_bytes(HEAD.pack(magic, version, len(head), crc) + head
                     + data[HEAD.size + hlen :])
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    try:
        loaded, _, _ = load_model(path)
    except ArtifactError:
        return
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x)), "a different network loaded silently"


def test_empty_dense_tensor_in_the_container_round_trips(tmp_path):
    state = {"empty": torch.zeros(0, 4), "q.weight": _state()["q.weight"]}
    tensors = encode_state(state)
    tensors["q.weight"] = encode_codebook(state["q.weight"], 2)  # forces the container
    path = write_artifact(tmp_path / "m", {"model": {}}, tensors)
    assert _outcome(path, path.read_bytes(), state) == "same"


@pytest.mark.parametrize("entry", [5, {"name": "a", "encoding": "dense", "shape": [1],
                                       "dtype": "float32", "params": {}, "blobs": []}])
def test_header_of_the_wrong_shape_raises_artifact_error(tmp_path, entry):
    head = zlib.compress(json.dumps({"tensors": [entry], "payload_length": 0}).encode())
    path = tmp_path / "m.sbz"
    path.write_bytes(HEAD.pack(b"SEGBENCH", 2, len(head), zlib.crc32(head)) + head)
    with pytest.raises(ArtifactError):
        read_artifact(path)


def test_safetensors_metadata_flip_is_detected(tmp_path):
    state = _state()
    path = write_artifact(tmp_path / "m", {"model": {"name": "enet"}}, encode_state(state))
    data = path.read_bytes()
    at = data.index(b"enet")
    flipped = bytearray(data)
    flipped[at] ^= 0x01  # "enet" -> "dnet": valid JSON, a different model
    assert _outcome(path, bytes(flipped), state) == "error"


# -- crafted headers (valid checksums): every field checked before use ------------------

def _qat_stage(**plan):
    return {"method": "qat", "version": 1, "config": {},
            "meta": {"plan": {"folds": [], "layers": {}, "acts": {}, "ties": {}, "feeds": {},
                              **plan}}}


CRAFTED = {
    "model not an object": {"model": []},
    "model name a number": {"model": {"name": 5, "num_classes": 9, "kwargs": {}}},
    "num_classes text": {"model": {"name": "enet", "num_classes": "abc", "kwargs": {}}},
    "num_classes negative": {"model": {"name": "enet", "num_classes": -3, "kwargs": {}}},
    "num_classes huge": {"model": {"name": "enet", "num_classes": 10**12, "kwargs": {}}},
    "num_classes bool": {"model": {"name": "enet", "num_classes": True, "kwargs": {}}},
    "kwargs a list": {"model": {"name": "enet", "num_classes": 9, "kwargs": [1]}},
    "kwargs unknown": {"model": {"name": "enet", "num_classes": 9, "kwargs": {"bogus": 1}}},
    "kwargs bad value": {"model": {"name": "deeplabv3plus_mobilenet", "num_classes": 9,
                                   "kwargs": {"output_stride": 7}}},
    "stages not a list": {"stages": "qat"},
    "stage not an object": {"stages": [5]},
    "stage unknown method": {"stages": [{"method": "nope", "version": 1, "config": {}}]},
    "stage config a list": {"stages": [{"method": "fp16", "version": 1, "config": []}]},
    "stage config unknown field": {"stages": [{"method": "fp16", "version": 1,
                                               "config": {"bogus": 1}}]},
    "stage meta a list": {"stages": [{"method": "qat", "version": 1, "config": {},
                                      "meta": []}]},
    "qat plan missing": {"stages": [{"method": "qat", "version": 1, "config": {},
                                     "meta": {}}]},
    "qat act bits 10**12": {"stages": [_qat_stage(acts={"x": {"bits": 10**12,
                                                              "signed": False}})]},
    "qat act bits text": {"stages": [_qat_stage(acts={"x": {"bits": "8", "signed": False}})]},
    "qat weight bits 10**12": {"stages": [_qat_stage(layers={"x": {
        "w_bits": 10**12, "per_channel": True, "in_q": None, "out_q": None}})]},
    "qat in_q bits 0": {"stages": [_qat_stage(layers={"x": {
        "w_bits": 8, "per_channel": True, "in_q": {"bits": 0, "signed": True},
        "out_q": None}})]},
    "qat fold of no layer": {"stages": [_qat_stage(folds=[["nope", "nada"]])]},
    "qat folds a number": {"stages": [_qat_stage(folds=5)]},
}


@pytest.fixture(scope="module")
def enet_tensors():
    from models import create_model

    return encode_state(create_model("enet", num_classes=9).state_dict())


@pytest.fixture
def alarm():
    """Fail, rather than hang, a load that runs away (e.g. computing 2**(10**12))."""
    import signal

    def boom(*_):
        raise TimeoutError("load_model ran for over 20 s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_crafted_header_raises_artifact_error(case, enet_tensors, tmp_path, alarm):
    from bench.export import load_model

    header = {"segbench_artifact": 1, "run_id": "x",
              "model": {"name": "enet", "num_classes": 9, "kwargs": {}}, "stages": [],
              **CRAFTED[case]}
    path = write_artifact(tmp_path / "m", header, enet_tensors)
    with pytest.raises(ArtifactError):
        load_model(path)


def _swap_offsets(data: bytes, a: str, b: str) -> bytes:
    """The same file with tensors `a` and `b` pointing at each other's bytes (the JSON
    header padded back to its length; no checksum touched)."""
    n = struct.unpack_from("<Q", data)[0]
    head = json.loads(data[8 : 8 + n])
    head[a]["data_offsets"], head[b]["data_offsets"] = (head[b]["data_offsets"],
                                                        head[a]["data_offsets"])
    blob = json.dumps(head, separators=(",", ":")).encode()
    assert len(blob) <= n
    return data[:8] + blob + b" " * (n - len(blob)) + data[8 + n :]


def test_safetensors_swapped_tensor_offsets_fail_to_load(tmp_path):
    g = torch.Generator().manual_seed(1)
    state = {"a.weight": torch.randn(4, 4, generator=g), "b.weight": torch.randn(4, 4, generator=g)}
    path = write_artifact(tmp_path / "m", {"model": {}}, encode_state(state))
    assert path.suffix == ".safetensors"
    swapped = _swap_offsets(path.read_bytes(), "a.weight", "b.weight")
    assert _outcome(path, swapped, state) == "error"
    with pytest.raises(ArtifactError, match="tensor index"):
        read_artifact(path)


def test_safetensors_without_the_index_crc_still_read(tmp_path):
    """Artifacts written before the index CRC existed load as before."""
    state = {"a.weight": torch.ones(3)}
    path = write_artifact(tmp_path / "m", {"model": {}}, encode_state(state))
    data = path.read_bytes()
    n = struct.unpack_from("<Q", data)[0]
    head = json.loads(data[8 : 8 + n])
    crcs = json.loads(head["__metadata__"]["segbench_crc32"])
    del crcs["index"]
    head["__metadata__"]["segbench_crc32"] = json.dumps(crcs, sort_keys=True)
    blob = json.dumps(head, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data[8 + n :])
    assert _outcome(path, path.read_bytes(), state) == "same"
