"""The `huffman` stage over real artifact tensors: which blobs it codes, at which symbol
width, and the state digest its `check` compares. The codec itself is tested in
tests/methods/codecs/test_huffman.py."""

import numpy as np
import torch

import methods.codecs.huffman as hc
from bench.artifact import Blob, EncodedTensor, decode_tensor, encode_state
from bench.facts import FactLog
from methods.codecs.codebook import encode_codebook
from methods.huffman import HuffmanCoding, huffman_blob, state_digest

RNG = np.random.default_rng(0)


def test_stage_codes_index_blobs_at_their_width_and_dense_floats_honestly():
    w = torch.tensor(RNG.choice([-0.5, -0.1, 0.0, 0.1, 0.7], size=(64, 32, 3, 3),
                                p=[0.05, 0.2, 0.5, 0.2, 0.05]), dtype=torch.float32)
    tensors = {"q.weight": encode_codebook(w, 3),
               **encode_state({"d.weight": torch.randn(128, 64), "n": torch.tensor(3)})}
    coded = HuffmanCoding().encode(FactLog(), None, tensors)
    idx_before = len(tensors["q.weight"].blobs["indices"].data)
    assert coded["q.weight"].blobs["indices"].codec == "huffman"
    assert len(coded["q.weight"].blobs["indices"].data) < 0.75 * idx_before
    for name, et in coded.items():
        assert torch.equal(decode_tensor(et), decode_tensor(tensors[name]))
        for key, blob in et.blobs.items():  # never larger than what it replaced
            assert len(blob.data) <= len(tensors[name].blobs[key].data)


def test_check_detects_a_changed_state():
    model = torch.nn.Conv2d(3, 4, 3)
    meta = HuffmanCoding().artifact_meta(model)
    assert HuffmanCoding().check(model, meta) == []
    with torch.no_grad():
        model.weight[0, 0, 0, 0] = torch.nextafter(model.weight[0, 0, 0, 0], torch.tensor(9.0))
    assert HuffmanCoding().check(model, meta) != []
    assert state_digest(model) != meta["state_sha256"]


def test_stage_picks_the_smallest_coding_over_all_widths():
    data = RNG.normal(scale=0.02, size=30_000).astype(np.float32).tobytes()
    et = EncodedTensor("dense", (30_000,), "float32")
    blob = huffman_blob(et, "w", Blob(data))
    sizes = [len(hc.encode(data, w)) for w in (8, 16) if hc.Plan(data, w).codable]
    assert blob.codec == "huffman" and len(blob.data) == min(sizes) < len(data)
    assert hc.decode(blob.data) == data
