"""Compact storage of sparse tensors: the bytes behind `size_bytes` of every pruned model.

Two position codes from Deep Compression (Han, Mao & Dally 2016), each followed by the
nonzero values in row-major order:

* `sparse_bitmask`: one bit per element (1 = stored value), `numel / 8` bytes. Cheapest
  when the tensor is only moderately sparse.
* `sparse_relidx`: the distance from the previous stored element in `index_bits` (4 or 8)
  bits. A gap longer than the code can express is bridged with a filler entry whose value
  is zero, exactly as in the paper, so it pays off at high sparsity.

`encode_sparse` tries every code and keeps the smallest, dense included: a tensor is never
stored larger than it would be dense. The position codes are exposed (`pack_positions`,
`unpack_positions`) so that other plugins (a k-means codebook, say) can store their own
values behind the same positions.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.artifact import (
    ArtifactError,
    Blob,
    EncodedTensor,
    dense,
    dtype_name,
    register_encoding,
    torch_dtype,
)

BITMASK = "sparse_bitmask"
RELIDX = "sparse_relidx"
INDEX_BITS = (4, 8)
FORMATS = ("auto", "bitmask", "relidx")


# -- position codes ---------------------------------------------------------------------

def bitmask_bytes(mask: np.ndarray) -> bytes:
    """Pack a flat bool array, one bit per element, little-endian bit order."""
    return np.packbits(mask.astype(bool), bitorder="little").tobytes()


def bitmask_positions(data: bytes, numel: int) -> np.ndarray:
    if len(data) != (numel + 7) // 8:
        raise ArtifactError(f"bitmask has {len(data)} bytes for {numel} elements")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=numel, bitorder="little")
    return np.flatnonzero(bits)


def relidx_entries(positions: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Relative indices of sorted `positions` with filler entries.

    Returns (codes, real): `codes[i]` is the gap minus one (0 .. 2**bits - 1) from the
    previous entry; `real[i]` is False for a filler, whose value is stored as zero.
    """
    span = 1 << index_bits
    gaps = np.diff(np.concatenate([[-1], positions.astype(np.int64)]))
    fillers = (gaps - 1) // span  # extra entries needed to bridge each gap
    counts = fillers + 1
    total = int(counts.sum())
    codes = np.full(total, span - 1, dtype=np.int64)
    last = np.cumsum(counts) - 1  # index of each real entry
    codes[last] = gaps - 1 - fillers * span
    real = np.zeros(total, dtype=bool)
    real[last] = True
    return codes, real


def relidx_bytes(codes: np.ndarray, index_bits: int) -> bytes:
    if index_bits == 8:
        return codes.astype(np.uint8).tobytes()
    if index_bits == 4:
        c = codes.astype(np.uint8)
        if len(c) % 2:
            c = np.concatenate([c, np.zeros(1, np.uint8)])
        return (c[0::2] | (c[1::2] << 4)).astype(np.uint8).tobytes()
    raise ValueError(f"index_bits must be one of {INDEX_BITS}, got {index_bits}")


def relidx_positions(data: bytes, entries: int, index_bits: int) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8)
    if index_bits == 8:
        codes = raw
    elif index_bits == 4:
        codes = np.empty(raw.size * 2, dtype=np.uint8)
        codes[0::2], codes[1::2] = raw & 0x0F, raw >> 4
    else:
        raise ArtifactError(f"relative index width {index_bits} bits is not one of {INDEX_BITS}")
    if codes.size < entries or codes.size > entries + 1:
        raise ArtifactError(f"relative index blob holds {codes.size} codes, expected {entries}")
    return np.cumsum(codes[:entries].astype(np.int64) + 1) - 1


def pack_positions(mask: torch.Tensor, kind: str, index_bits: int = 4) -> tuple[Blob, dict]:
    """Encode where `mask` (any shape, bool) is True. Returns the blob and the parameters
    `unpack_positions` needs; for `relidx` also `real` (bool per entry, fillers False),
    which the caller uses to lay out its values (a filler's value must decode to zero)."""
    flat = mask.detach().cpu().reshape(-1).numpy().astype(bool)
    if kind == "bitmask":
        return Blob(bitmask_bytes(flat)), {"code": "bitmask"}
    if kind == "relidx":
        codes, real = relidx_entries(np.flatnonzero(flat), index_bits)
        params = {"code": "relidx", "index_bits": index_bits, "entries": int(codes.size)}
        return Blob(relidx_bytes(codes, index_bits)), {**params, "real": real}
    raise ValueError(f"unknown position code {kind!r}; valid choices: bitmask, relidx")


def unpack_positions(data: bytes, params: dict, numel: int) -> np.ndarray:
    """Flat positions of the stored entries (fillers included for `relidx`)."""
    code = params.get("code")
    if code == "bitmask":
        return bitmask_positions(data, numel)
    if code == "relidx":
        pos = relidx_positions(data, int(params["entries"]), int(params["index_bits"]))
        if pos.size and (pos[-1] >= numel or pos[0] < 0):
            raise ArtifactError(f"relative index points past the tensor's {numel} elements")
        return pos
    raise ArtifactError(f"unknown position code {code!r}; known: bitmask, relidx")


# -- values -----------------------------------------------------------------------------

def _value_bytes(values: torch.Tensor) -> bytes:
    values = values.detach().cpu().contiguous()
    if values.dtype == torch.bfloat16:
        values = values.view(torch.int16)
    return values.numpy().tobytes()


def _values_from(data: bytes, dtype: torch.dtype, count: int) -> torch.Tensor:
    storage = torch.int16 if dtype == torch.bfloat16 else dtype
    size = torch.empty(0, dtype=storage).element_size()
    if len(data) != count * size:
        raise ArtifactError(f"values blob has {len(data)} bytes, expected {count * size}")
    t = torch.frombuffer(bytearray(data), dtype=storage) if count else torch.empty(0, dtype=storage)
    return t.view(torch.bfloat16) if dtype == torch.bfloat16 else t


# -- tensor encodings -------------------------------------------------------------------

def encode_bitmask(t: torch.Tensor) -> EncodedTensor:
    t = t.detach().cpu().contiguous()
    nz = t.reshape(-1) != 0
    mask_blob, _ = pack_positions(nz, "bitmask")
    return EncodedTensor(BITMASK, tuple(t.shape), dtype_name(t.dtype),
                         params={"nnz": int(nz.sum())},
                         blobs={"mask": mask_blob, "values": Blob(_value_bytes(t.reshape(-1)[nz]))})


def encode_relidx(t: torch.Tensor, index_bits: int = 4) -> EncodedTensor:
    t = t.detach().cpu().contiguous()
    flat = t.reshape(-1)
    nz = flat != 0
    blob, params = pack_positions(nz, "relidx", index_bits)
    real = torch.from_numpy(params.pop("real"))
    values = torch.zeros(int(params["entries"]), dtype=t.dtype)
    values[real] = flat[nz]
    return EncodedTensor(RELIDX, tuple(t.shape), dtype_name(t.dtype),
                         params={"index_bits": index_bits, "entries": int(params["entries"])},
                         blobs={"index": blob, "values": Blob(_value_bytes(values))})


def encoded_bytes(et: EncodedTensor) -> int:
    return sum(len(b.data) for b in et.blobs.values())


def encode_sparse(t: torch.Tensor, fmt: str = "auto") -> EncodedTensor:
    """The smallest of dense, bitmask and relative-index (4 and 8 bit) for `t`.

    `fmt` restricts the choice to one family (`bitmask` or `relidx`); dense still wins if
    the tensor is not sparse enough for the code to pay off.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown sparse format {fmt!r}; valid choices: {', '.join(FORMATS)}")
    if t.is_floating_point() and t.numel() == 0:
        return encode_bitmask(t)  # bench.artifact's dense decoder rejects empty tensors
    candidates = [dense(t)]
    if t.is_floating_point():
        if fmt in ("auto", "bitmask"):
            candidates.append(encode_bitmask(t))
        if fmt in ("auto", "relidx"):
            candidates += [encode_relidx(t, b) for b in INDEX_BITS]
    return min(candidates, key=encoded_bytes)


def sparsify_state(tensors: dict[str, EncodedTensor], fmt: str = "auto",
                   names: set[str] | None = None) -> dict[str, EncodedTensor]:
    """Re-encode the still-dense float tensors of an artifact (all, or those in `names`)
    sparsely where that is smaller; tensors an earlier stage encoded are left alone."""
    from bench.artifact import decode_tensor

    out = {}
    for name, et in tensors.items():
        plain = et.encoding == "dense" and all(b.codec == "raw" for b in et.blobs.values())
        if plain and (names is None or name in names) and et.dtype.startswith(("float", "bfl")):
            out[name] = encode_sparse(decode_tensor(et), fmt)
        else:
            out[name] = et
    return out


@register_encoding(BITMASK)
def _decode_bitmask(et: EncodedTensor, blobs: dict[str, bytes]) -> torch.Tensor:
    dt = torch_dtype(et.dtype)
    numel = int(np.prod(et.shape)) if et.shape else 1
    pos = bitmask_positions(blobs["mask"], numel)
    values = _values_from(blobs["values"], dt, pos.size)
    out = torch.zeros(numel, dtype=dt)
    out[torch.from_numpy(pos)] = values
    return out.reshape(et.shape)


@register_encoding(RELIDX)
def _decode_relidx(et: EncodedTensor, blobs: dict[str, bytes]) -> torch.Tensor:
    dt = torch_dtype(et.dtype)
    numel = int(np.prod(et.shape)) if et.shape else 1
    params = {"code": "relidx", **et.params}
    pos = unpack_positions(blobs["index"], params, numel)
    values = _values_from(blobs["values"], dt, pos.size)
    out = torch.zeros(numel, dtype=dt)
    out[torch.from_numpy(pos)] = values
    return out.reshape(et.shape)
