"""Fixed-width bit packing of unsigned integers (b-bit cluster indices, index gaps).

Fields are packed least-significant bit first, so that 8-, 16- and 32-bit fields give the
same bytes as a little-endian array of that width: a Huffman stage can read any packed blob
as a stream of `bits`-wide symbols without knowing who packed it.
"""

from __future__ import annotations

import numpy as np

from bench.artifact import ArtifactError

_BYTE_WIDTHS = {8: "<u1", 16: "<u2", 32: "<u4", 64: "<u8"}


def packed_size(count: int, bits: int) -> int:
    """Bytes that `count` fields of `bits` bits occupy."""
    return (count * bits + 7) // 8


def pack(values: np.ndarray, bits: int) -> bytes:
    """Pack non-negative integers < 2**bits into `packed_size(len(values), bits)` bytes."""
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in 1..64, got {bits}")
    v = np.ascontiguousarray(values, dtype=np.uint64).ravel()
    if v.size and bits < 64 and int(v.max()) >> bits:
        raise ValueError(f"a value does not fit in {bits} bits")
    if bits in _BYTE_WIDTHS:
        return v.astype(_BYTE_WIDTHS[bits]).tobytes()
    shifts = np.arange(bits, dtype=np.uint64)
    bit_matrix = ((v[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bit_matrix.ravel(), bitorder="little").tobytes()


def unpack(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of `pack`: `count` fields of `bits` bits as uint64. Raises ArtifactError if
    `data` has not exactly the packed size."""
    if not 1 <= bits <= 64:
        raise ArtifactError(f"bit width {bits} outside 1..64")
    if count < 0 or len(data) != packed_size(count, bits):
        raise ArtifactError(
            f"{count} fields of {bits} bits need {packed_size(max(count, 0), bits)} bytes, "
            f"got {len(data)}"
        )
    if bits in _BYTE_WIDTHS:
        return np.frombuffer(data, dtype=_BYTE_WIDTHS[bits]).astype(np.uint64)
    bit_array = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    bit_matrix = bit_array[: count * bits].reshape(count, bits).astype(np.uint64)
    return (bit_matrix << np.arange(bits, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def unpack_all(data: bytes, bits: int) -> tuple[np.ndarray, int, int]:
    """Read `data` as whole `bits`-wide fields plus leftover tail bits.

    Returns (fields, tail value, tail bit count) with `len(data) * 8 == len(fields) * bits +
    tail bits`, so that `pack_all` rebuilds `data` exactly, whoever packed it.
    """
    count = len(data) * 8 // bits
    body = count * bits
    if bits in _BYTE_WIDTHS:
        fields = np.frombuffer(data[: body // 8], dtype=_BYTE_WIDTHS[bits]).astype(np.uint64)
    else:
        bit_array = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        bit_matrix = bit_array[:body].reshape(count, bits).astype(np.uint64)
        fields = (bit_matrix << np.arange(bits, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)
    first = body // 8
    tail = int.from_bytes(data[first:], "little") >> (body - 8 * first)
    return fields, tail, len(data) * 8 - body


def pack_all(fields: np.ndarray, bits: int, tail: int, tail_bits: int) -> bytes:
    """Inverse of `unpack_all`."""
    body = len(fields) * bits
    if (body + tail_bits) % 8 or tail >> tail_bits:
        raise ArtifactError(f"{len(fields)} fields of {bits} bits and a {tail_bits}-bit tail "
                            "do not fill whole bytes")
    packed = pack(fields, bits)
    used = body % 8  # bits of the last packed byte that hold field data
    if used:
        last = packed[-1] | (tail << used)
        return packed[:-1] + last.to_bytes((used + tail_bits) // 8, "little")
    return packed + tail.to_bytes(tail_bits // 8, "little")
