"""Canonical Huffman coding of a byte string read as fixed-width symbols (Huffman 1952;
stage three of Deep Compression). Everything the decoder needs is in the coded bytes:

    varint version | varint symbol_bits | varint tail_bits | varint tail | varint n
    | varint distinct symbols S | varint max code length L | L varints: codes per length
    | the S symbols in canonical order, packed at symbol_bits
    | varint total bits T | [n > CHUNK: the bit offset of every CHUNK-th symbol, packed
    at bit_length(T)] | the bitstream (codes MSB first, zero padded to a byte)

Symbols are the `symbol_bits`-wide little-endian fields of the input (see `bitpack`); the
few bits left over at the end ("tail") are stored as they are, so any input round-trips
bit-exactly. Code lengths are limited to MAX_CODE_LEN so the decoding table stays small.

Decoding is table-driven and vectorised with numpy: a 2**L table maps every L-bit window
to (symbol, code length). The sync offsets every CHUNK symbols split the stream into
independent lanes. A long stream decodes all its lanes in lock-step, one array operation
per symbol position (CHUNK Python steps whatever the size). A short one, where that would
be mostly per-step overhead, uses pointer doubling: the code length at every bit position
is a "next symbol starts here" pointer, and log2(CHUNK) passes over the bit positions walk
the chain. Any inconsistency raises ArtifactError; every loop is bounded by CHUNK or by the
header's counts, which are checked against the data length first.

Registered as the artifact codec `huffman`: a blob whose codec is `huffman` decodes with
this module alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.artifact import ArtifactError, register_codec
from methods.codecs.bitpack import pack, pack_all, packed_size, unpack, unpack_all

VERSION = 1
MAX_CODE_LEN = 20  # the decoding table has 2**max_len entries
MAX_SYMBOLS = 1 << 16  # alphabets above this are not worth a code table
CHUNK = 1 << 12  # a sync offset every CHUNK symbols (about 0.006 bits per symbol)
_LANES_FROM = 48  # chunks from which lock-step lanes beat pointer doubling
_MAX_SYMBOL_COUNT = 1 << 27  # a header declaring more symbols is corrupt


# -- varints ------------------------------------------------------------------------------

def _put_varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("varints are unsigned")
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return


class _Reader:
    """Reads the header fields; every read past the end is an ArtifactError."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def varint(self) -> int:
        value = shift = 0
        while True:
            if self.pos >= len(self.data):
                raise ArtifactError("huffman stream truncated in its header")
            if shift > 70:
                raise ArtifactError("huffman header holds an overlong varint")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ArtifactError("huffman stream truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk


# -- code construction --------------------------------------------------------------------

def code_lengths(counts: np.ndarray, max_len: int = MAX_CODE_LEN) -> np.ndarray:
    """Huffman code lengths for symbol `counts` (all > 0), at most `max_len` bits.

    Lengths above `max_len` are avoided the way JPEG encoders do it: halve the counts
    (keeping them >= 1) and rebuild until the tree is shallow enough, which costs a
    fraction of a bit only on pathological distributions."""
    counts = np.asarray(counts, dtype=np.int64)
    if len(counts) > (1 << max_len):
        raise ValueError(f"{len(counts)} symbols cannot have codes of <= {max_len} bits")
    if len(counts) <= 1:
        return np.zeros(len(counts), dtype=np.int64)
    while True:
        lengths = _unlimited_lengths(counts)
        if lengths.max() <= max_len:
            return lengths
        counts = np.maximum(counts >> 1, 1)


def _unlimited_lengths(counts: np.ndarray) -> np.ndarray:
    """Optimal code lengths by the two-queue construction (van Leeuwen 1976): with the
    leaves sorted by count, merged nodes are created in non-decreasing weight order, so the
    two smallest nodes are always at the heads of the leaf queue and the merged queue. No
    heap: about ten times faster than heapq for the 2**16-symbol alphabets of 16-bit words."""
    n = len(counts)
    order = np.argsort(counts, kind="stable")
    leaf = counts[order].tolist()
    merged: list[int] = []
    parent = [0] * (2 * n - 1)
    i = j = 0
    for k in range(n - 1):
        if i < n and (j >= k or leaf[i] <= merged[j]):
            a, wa, i = i, leaf[i], i + 1
        else:
            a, wa, j = n + j, merged[j], j + 1
        if i < n and (j >= k or leaf[i] <= merged[j]):
            b, wb, i = i, leaf[i], i + 1
        else:
            b, wb, j = n + j, merged[j], j + 1
        parent[a] = parent[b] = n + k
        merged.append(wa + wb)
    depth = [0] * (2 * n - 1)
    for node in range(2 * n - 3, -1, -1):  # parents are numbered after their children
        depth[node] = depth[parent[node]] + 1
    lengths = np.empty(n, dtype=np.int64)
    lengths[order] = depth[:n]
    return lengths


def _canonical_codes(lengths_sorted: np.ndarray, max_len: int) -> np.ndarray:
    """Codes of symbols sorted by (length, symbol), as in DEFLATE (RFC 1951, 3.2.2)."""
    bl_count = np.bincount(lengths_sorted, minlength=max_len + 1)
    bl_count[0] = 0
    next_code = np.zeros(max_len + 1, dtype=np.int64)
    code = 0
    for bits in range(1, max_len + 1):
        code = (code + int(bl_count[bits - 1])) << 1
        next_code[bits] = code
    first_of_len = np.searchsorted(lengths_sorted, lengths_sorted, side="left")
    rank = np.arange(len(lengths_sorted)) - first_of_len
    return next_code[lengths_sorted] + rank


# -- encoding -----------------------------------------------------------------------------

class Plan:
    """A byte string read as `symbol_bits`-wide symbols, with its alphabet, counts and
    code lengths: what the size estimates and the encoder share (one sort, one tree)."""

    def __init__(self, data: bytes, symbol_bits: int):
        if not 1 <= symbol_bits <= 64:
            raise ValueError(f"symbol_bits must be in 1..64, got {symbol_bits}")
        self.symbol_bits = symbol_bits
        self.fields, self.tail, self.tail_bits = unpack_all(data, symbol_bits)
        self._lengths: np.ndarray | None = None
        self._order: np.ndarray | None = None
        self.codable = len(self.fields) <= _MAX_SYMBOL_COUNT and not _surely_too_many(
            self.fields, symbol_bits)
        if not self.codable:
            self.alphabet = self.inverse = self.counts = None
        elif symbol_bits <= 16:  # small alphabet: count in O(n) instead of sorting
            as_int = self.fields.astype(np.int64)
            all_counts = np.bincount(as_int, minlength=1 << symbol_bits)
            self.alphabet = np.flatnonzero(all_counts).astype(np.uint64)
            self.counts = all_counts[self.alphabet.astype(np.int64)]
            rank = np.cumsum(all_counts > 0) - 1
            self.inverse = rank[as_int]
        else:
            self.alphabet, self.inverse, self.counts = np.unique(
                self.fields, return_inverse=True, return_counts=True)
        if self.codable and len(self.alphabet) > MAX_SYMBOLS:
            self.codable = False

    def lower_bound(self) -> int:
        """Bytes the coding needs at least: entropy of the symbols plus the symbol table."""
        p = self.counts / max(len(self.fields), 1)
        entropy_bits = float(-(self.counts * np.log2(p)).sum()) if len(p) > 1 else 0.0
        return int(entropy_bits // 8) + packed_size(len(self.alphabet), self.symbol_bits)

    @property
    def lengths(self) -> np.ndarray:
        """Code length of each alphabet symbol (built once)."""
        if self._lengths is None:
            self._lengths = code_lengths(self.counts)
        return self._lengths

    @property
    def order(self) -> np.ndarray:
        """Alphabet positions in canonical order: by code length, then symbol (built once)."""
        if self._order is None:
            self._order = np.lexsort((self.alphabet, self.lengths))
        return self._order

    def coded_size(self) -> int:
        """The exact length in bytes of `encode(self)`, without writing the bitstream."""
        _require_codable(self)
        head = len(_table_header(self))
        if not len(self.lengths) or self.lengths.max() == 0:
            return head
        total = int((self.counts * self.lengths).sum())
        n_sync = (len(self.fields) - 1) // CHUNK
        return (head + _varint_size(total) + packed_size(n_sync, total.bit_length())
                + (total + 7) // 8)


def _surely_too_many(fields: np.ndarray, symbol_bits: int) -> bool:
    """True when a prefix of the fields already holds more than MAX_SYMBOLS distinct values:
    the common case of 32-bit words of float weights, decided without sorting them all."""
    if symbol_bits <= 16 or len(fields) <= MAX_SYMBOLS:
        return False
    head = np.sort(fields[: 2 * MAX_SYMBOLS])
    return 1 + int(np.count_nonzero(head[1:] != head[:-1])) > MAX_SYMBOLS


def _require_codable(plan: Plan) -> None:
    if not plan.codable:
        raise ValueError(f"{len(plan.fields)} symbols: at most {_MAX_SYMBOL_COUNT}, and at most "
                         f"{MAX_SYMBOLS} distinct, are coded")


def _varint_size(value: int) -> int:
    return max(1, -(-value.bit_length() // 7))


def _table_header(plan: Plan) -> bytearray:
    """Everything before the total bit count: sizes, code-length table, alphabet."""
    alphabet, lengths, order = plan.alphabet, plan.lengths, plan.order
    max_len = int(lengths.max()) if len(lengths) else 0
    out = bytearray()
    for v in (VERSION, plan.symbol_bits, plan.tail_bits, plan.tail, len(plan.fields),
              len(alphabet), max_len):
        _put_varint(out, v)
    for count in np.bincount(lengths[order], minlength=max_len + 1)[1:]:
        _put_varint(out, int(count))
    out += pack(alphabet[order], plan.symbol_bits)
    return out


def encode(data: bytes | Plan, symbol_bits: int | None = None) -> bytes:
    """Huffman-code `data` read as `symbol_bits`-wide symbols (or a prepared Plan)."""
    plan = data if isinstance(data, Plan) else Plan(data, symbol_bits)
    _require_codable(plan)
    out = _table_header(plan)
    lengths = plan.lengths
    max_len = int(lengths.max()) if len(lengths) else 0
    if max_len == 0:  # zero or one distinct symbol: the counts say everything
        return bytes(out)
    order = plan.order
    code_of = np.empty(len(lengths), dtype=np.int64)
    code_of[order] = _canonical_codes(lengths[order], max_len)
    sym_len = lengths[plan.inverse]
    ends = np.cumsum(sym_len)
    starts = ends - sym_len
    total = int(ends[-1])
    _put_varint(out, total)
    if len(plan.fields) > CHUNK:
        out += pack(starts[CHUNK::CHUNK], total.bit_length())
    out += _write_bits(code_of[plan.inverse], sym_len, starts, total)
    return bytes(out)


def _write_bits(codes: np.ndarray, lengths: np.ndarray, starts: np.ndarray,
                total: int) -> bytes:
    """Concatenate codes MSB first. A code of <= 25 bits starting at bit s lies in the 4
    bytes from s // 8; the codes' bits are disjoint, so OR-ing them into the bytes is a sum,
    which bincount does for all codes at once."""
    n_bytes = (total + 7) // 8
    word = codes.astype(np.uint64) << (32 - (starts & 7) - lengths).astype(np.uint64)
    first = starts >> 3
    out = np.zeros(n_bytes + 3, dtype=np.int64)
    for k in range(4):
        byte = ((word >> np.uint64(8 * (3 - k))) & np.uint64(0xFF)).astype(np.float64)
        out += np.bincount(first + k, weights=byte, minlength=n_bytes + 3).astype(np.int64)
    return out[:n_bytes].astype(np.uint8).tobytes()


# -- decoding -----------------------------------------------------------------------------

def decode(coded: bytes) -> bytes:
    """Inverse of `encode`. Raises ArtifactError on any malformed input."""
    r = _Reader(coded)
    version = r.varint()
    if version != VERSION:
        raise ArtifactError(f"huffman stream version {version}, this code reads {VERSION}")
    symbol_bits, tail_bits, tail, n, n_sym, max_len = (r.varint() for _ in range(6))
    if not 1 <= symbol_bits <= 64 or tail_bits >= symbol_bits or tail >> tail_bits:
        raise ArtifactError("huffman header has an invalid symbol width or tail")
    if (n * symbol_bits + tail_bits) % 8 or n > _MAX_SYMBOL_COUNT:
        raise ArtifactError(f"huffman header declares an impossible size ({n} symbols)")
    if n_sym > MAX_SYMBOLS or max_len > MAX_CODE_LEN or (n_sym == 0) != (n == 0):
        raise ArtifactError("huffman header has an invalid code table size")
    per_len = np.array([r.varint() for _ in range(max_len)], dtype=np.int64)
    if max_len and (per_len[-1] == 0 or per_len.sum() != n_sym):
        raise ArtifactError("huffman code-length table does not match the alphabet")
    if max_len == 0 and n_sym > 1:
        raise ArtifactError("huffman header: several symbols but no code lengths")
    alphabet = unpack(r.take(packed_size(n_sym, symbol_bits)), symbol_bits, n_sym)
    if max_len == 0:
        if r.pos != len(coded):
            raise ArtifactError("huffman stream has trailing bytes")
        fields = np.full(n, alphabet[0] if n_sym else 0, dtype=np.uint64)
        return pack_all(fields, symbol_bits, tail, tail_bits)
    lengths = np.repeat(np.arange(1, max_len + 1), per_len)
    kraft = int((per_len << (max_len - np.arange(1, max_len + 1))).sum())
    if kraft > (1 << max_len):
        raise ArtifactError("huffman code lengths violate the Kraft inequality")
    total = r.varint()
    if total < n or total > 8 * len(coded):
        raise ArtifactError(f"huffman header declares {total} bits for {n} symbols")
    n_chunks = -(-n // CHUNK)
    starts = np.zeros(n_chunks, dtype=np.int64)
    if n_chunks > 1:
        width = total.bit_length()
        starts[1:] = unpack(r.take(packed_size(n_chunks - 1, width)), width, n_chunks - 1)
        if (np.diff(starts) <= 0).any() or starts[-1] >= total:
            raise ArtifactError("huffman sync offsets are not increasing within the stream")
    stream = r.take(len(coded) - r.pos)
    if len(stream) != (total + 7) // 8:
        raise ArtifactError(f"huffman bitstream is {len(stream)} bytes, header says {total} bits")
    index = _decode_indices(stream, total, n, lengths, max_len, starts)
    return pack_all(alphabet[index], symbol_bits, tail, tail_bits)


def _decode_indices(stream: bytes, total: int, n: int, lengths: np.ndarray, max_len: int,
                    starts: np.ndarray) -> np.ndarray:
    """Positions (in canonical order) of the n coded symbols."""
    n_sym = len(lengths)
    span = (1 << max_len) >> lengths  # table entries per code
    filled = int(span.sum())
    table_sym = np.full(1 << max_len, n_sym, dtype=np.int64)  # n_sym marks "no such code"
    table_len = np.zeros(1 << max_len, dtype=np.int64)
    table_sym[:filled] = np.repeat(np.arange(n_sym), span)
    table_len[:filled] = np.repeat(lengths, span)
    ends = np.append(starts[1:], total)
    counts = np.full(len(starts), CHUNK, dtype=np.int64)
    counts[-1] = n - CHUNK * (len(starts) - 1)
    # room for a corrupt lane to run CHUNK maximal codes past the end without an IndexError
    pad = bytes(CHUNK * MAX_CODE_LEN // 8 + 8)
    padded = np.frombuffer(stream + pad, dtype=np.uint8).astype(np.uint32)
    words = (padded[:-3] << 24) | (padded[1:-2] << 16) | (padded[2:-1] << 8) | padded[3:]
    decode_lanes = _lanes if len(starts) >= _LANES_FROM else _doubling
    sym, stop = decode_lanes(words, table_sym, table_len, max_len, starts, counts, total)
    if (sym >= n_sym).any() or (stop != ends).any():
        raise ArtifactError("huffman bitstream is corrupt (invalid code or misaligned end)")
    return sym


def _window(words: np.ndarray, pos: np.ndarray, max_len: int) -> np.ndarray:
    """The max_len bits from bit `pos` on, as integers (table indices)."""
    shift = (pos & 7).astype(np.uint32)
    return (words[pos >> 3] << shift) >> np.uint32(32 - max_len)


def _lanes(words, table_sym, table_len, max_len, starts, counts, total):
    """All chunks in lock-step: one vectorised table lookup per symbol position."""
    n_chunks = len(starts)
    out = np.empty((n_chunks, CHUNK), dtype=np.int64)
    pos = starts.astype(np.int64).copy()
    stop = np.empty(n_chunks, dtype=np.int64)
    last = int(counts[-1])
    live = n_chunks
    for k in range(int(counts.max())):
        if k == last:  # the short last chunk is done
            stop[-1] = pos[-1]
            live -= 1
            pos = pos[:live]
        w = _window(words, pos, max_len)
        out[:live, k] = table_sym[w]
        pos += table_len[w]
    stop[:live] = pos
    sym = out.reshape(-1)[: CHUNK * (n_chunks - 1) + last]
    return sym, stop


def _doubling(words, table_sym, table_len, max_len, starts, counts, total):
    """Pointer doubling over every bit position: jump_k[p] is where the k-th next symbol
    starts; positions k..2k-1 of every chain are jump_k of positions 0..k-1, and
    jump_2k = jump_k[jump_k]. About log2(CHUNK) passes over the bits."""
    size = total + 1
    all_pos = np.arange(size, dtype=np.int64)
    step = table_len[_window(words, all_pos, max_len)]
    jump = np.minimum(all_pos + step, total)
    need = int(counts.max())
    pos = starts[:, None].astype(np.int64)
    while pos.shape[1] < need:
        pos = np.concatenate([pos, jump[pos]], axis=1)[:, :need]
        if pos.shape[1] < need:
            jump = jump[jump]
    chain = np.concatenate([pos[i, : counts[i]] for i in range(len(counts))])
    w = _window(words, chain, max_len)
    lens = table_len[w]
    last = np.cumsum(counts) - 1
    sym = table_sym[w]
    # a chain that got stuck (length 0) or ran off the end shows in sym or in `stop`
    return sym, chain[last] + lens[last]


@register_codec("huffman")
def decode_huffman(data: bytes, params: dict[str, Any]) -> bytes:
    """The artifact codec: `params` is unused (everything is in the coded bytes)."""
    return decode(data)
