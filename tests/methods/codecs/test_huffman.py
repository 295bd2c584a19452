"""The Huffman codec (methods/codecs/huffman.py): bit-exact round trips on random and
adversarial inputs, the code's optimality bound, exact size planning, and corrupt streams
that raise ArtifactError and never hang."""

import os

import numpy as np
import pytest

import methods.codecs.huffman as hc
from bench.artifact import ArtifactError, Blob, EncodedTensor
from methods.codecs.bitpack import pack
from methods.huffman import huffman_blob  # the stage's choice for a blob no code helps

RNG = np.random.default_rng(0)


def _roundtrip(data: bytes, bits: int) -> bytes:
    coded = hc.encode(data, bits)
    assert hc.decode(coded) == data
    return coded


@pytest.mark.parametrize("bits", [1, 3, 5, 8, 12, 16, 32])
def test_random_bytes_round_trip_at_every_symbol_width(bits):
    for size in (1, 2, 3, 7, 64, 1001):
        _roundtrip(os.urandom(size), bits)


def test_empty_input_round_trips():
    for bits in (1, 5, 8, 32):
        assert hc.decode(hc.encode(b"", bits)) == b""


def test_one_symbol_costs_no_bitstream():
    data = bytes(100_000)
    coded = _roundtrip(data, 8)
    assert len(coded) < 16  # header and the one symbol: the count says the rest
    _roundtrip(b"\x07" * 999, 3)  # one 3-bit symbol plus a tail


def test_equal_frequencies_give_equal_lengths_and_no_gain():
    assert set(hc.code_lengths(np.full(256, 40))) == {8}
    data = RNG.permutation(np.repeat(np.arange(256, dtype=np.uint8), 40)).tobytes()
    coded = _roundtrip(data, 8)
    assert len(coded) > len(data)  # 8 bits a symbol plus the table: no gain, so the
    blob = huffman_blob(EncodedTensor("dense", (len(data),), "uint8"), "data", Blob(data))
    assert blob.codec == "raw" and blob.data == data  # stage keeps the raw blob


def test_skewed_distribution_is_length_limited_and_near_entropy():
    # Fibonacci counts make an unlimited Huffman tree 39 levels deep
    fib = [1, 1]
    while len(fib) < 40:
        fib.append(fib[-1] + fib[-2])
    assert hc._unlimited_lengths(np.array(fib)).max() == 39
    lengths = hc.code_lengths(np.array(fib))
    assert lengths.max() <= hc.MAX_CODE_LEN
    assert (2.0 ** -lengths.astype(float)).sum() <= 1.0  # Kraft: a prefix code exists
    symbols = np.repeat(np.arange(40), np.minimum(fib, 5000)).astype(np.uint64)
    _roundtrip(pack(RNG.permutation(symbols), 6), 6)


def test_geometric_indices_compress_to_within_a_bit_of_entropy():
    v = np.minimum(RNG.geometric(0.3, 50_000) - 1, 31).astype(np.uint64)
    data = pack(v, 5)
    coded = _roundtrip(data, 5)
    p = np.bincount(v.astype(np.int64)) / len(v)
    p = p[p > 0]
    entropy_bytes = -(p * np.log2(p)).sum() * len(v) / 8
    assert entropy_bytes <= len(coded) <= entropy_bytes + len(v) / 8 + 64
    assert len(coded) < 0.7 * len(data)


def test_long_streams_use_sync_offsets_and_both_decoders_agree(monkeypatch):
    v = np.minimum(RNG.geometric(0.5, 60 * hc.CHUNK + 123) - 1, 15).astype(np.uint64)
    data = pack(v, 4)
    coded = hc.encode(data, 4)
    assert hc.decode(coded) == data  # >= _LANES_FROM chunks: lock-step lanes
    monkeypatch.setattr(hc, "_LANES_FROM", 10**9)
    assert hc.decode(coded) == data  # the same stream by pointer doubling


def test_truncated_streams_raise_artifact_error():
    coded = hc.encode(pack(RNG.integers(0, 9, 3000).astype(np.uint64), 4), 4)
    for cut in range(len(coded)):
        with pytest.raises(ArtifactError):
            hc.decode(coded[:cut])


@pytest.mark.parametrize("lanes", [False, True])
def test_bit_flips_raise_artifact_error_or_decode_to_bytes(monkeypatch, lanes):
    """The codec has no checksum (the container's CRC32 catches payload damage), so a
    flipped bit may decode to other valid data; it must never crash or hang."""
    monkeypatch.setattr(hc, "_LANES_FROM", 1 if lanes else 10**9)
    # lanes take a Python step per symbol: a shorter stream for them
    data = pack(RNG.integers(0, 6, 150 if lanes else 700).astype(np.uint64), 3)
    coded = bytearray(hc.encode(data, 3))
    raised = 0
    bits = range(8 * len(coded))
    for bit in bits:
        coded[bit // 8] ^= 1 << (bit % 8)
        try:
            out = hc.decode(bytes(coded))
            assert isinstance(out, bytes)
        except ArtifactError:
            raised += 1
        coded[bit // 8] ^= 1 << (bit % 8)
    assert raised > 0


def test_garbage_raises_artifact_error():
    for seed in range(200):
        junk = np.random.default_rng(seed).integers(0, 256, 1 + seed % 40, dtype=np.uint8)
        try:
            hc.decode(junk.tobytes())
        except ArtifactError:
            pass


def _heap_cost(counts: np.ndarray) -> int:
    """Cost (sum of count x length) of an optimal code, by the textbook heap merge: the
    total of all merged weights."""
    import heapq

    heap = [int(c) for c in counts]
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        cost += merged
        heapq.heappush(heap, merged)
    return cost


@pytest.mark.parametrize("n", [2, 3, 17, 256, 5000])
def test_two_queue_lengths_are_optimal_and_prefix_free(n):
    counts = RNG.integers(1, 10_000, n) * RNG.integers(1, 3, n)  # many ties
    lengths = hc._unlimited_lengths(counts)
    assert int((counts * lengths).sum()) == _heap_cost(counts)
    assert (2.0 ** -lengths.astype(float)).sum() == pytest.approx(1.0)  # a full tree


@pytest.mark.parametrize("bits", [1, 4, 8, 16, 32])
def test_coded_size_is_exactly_the_encoded_length(bits):
    for data in (b"", bytes(50), os.urandom(9),
                 pack(np.minimum(RNG.geometric(0.2, 3 * hc.CHUNK + 5) - 1, 255).astype(
                     np.uint64), 8),
                 RNG.normal(size=20_000).astype(np.float16).tobytes()):
        plan = hc.Plan(data, bits)
        if plan.codable:
            assert plan.coded_size() == len(hc.encode(plan))


def test_words_with_too_many_values_are_refused_without_a_full_sort():
    floats = RNG.normal(size=5 * hc.MAX_SYMBOLS).astype(np.float32).tobytes()
    assert not hc.Plan(floats, 32).codable
    with pytest.raises(ValueError, match="distinct"):
        hc.encode(floats, 32)
    few = RNG.choice(np.float32([0.5, -0.25, 0.0]), 5 * hc.MAX_SYMBOLS).tobytes()
    assert hc.Plan(few, 32).codable  # a clustered tensor's words are coded
    _roundtrip(few, 32)
