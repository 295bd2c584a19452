"""The `codebook` encoding: a weight with at most 2**bits distinct values stored as its
codebook and a b-bit index per weight ("dense" layout), or, for a sparse weight, Deep
Compression's relative indexing (Han, Mao & Dally 2016, Sec. 4): for each nonzero, the gap
since the previous entry in `gap_bits` bits plus its index, with filler entries (index 0,
value 0) where a gap overflows ("sparse" layout). `encode_codebook` writes whichever is
smaller. Weight sharing (`kmeans`) writes it; any artifact that holds it decodes with this
module alone.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bench.artifact import (
    ArtifactError,
    Blob,
    EncodedTensor,
    dtype_name,
    register_encoding,
    torch_dtype,
)
from methods.codecs.bitpack import pack, packed_size, unpack

_FLOAT_DTYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64}


def _gap_entries(positions: np.ndarray, gap_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Relative indexing (Deep Compression, Sec. 4): per nonzero, the zeros skipped since
    the previous entry; a gap of >= 2**gap_bits is split with filler entries that each
    skip 2**gap_bits - 1 zeros and store a zero. Returns (gaps, is_real_entry)."""
    gaps = np.diff(positions, prepend=-1) - 1
    span = 1 << gap_bits
    fillers = gaps // span
    n = len(gaps) + int(fillers.sum())
    real = np.zeros(n, dtype=bool)
    real_at = np.arange(len(gaps)) + np.cumsum(fillers)
    real[real_at] = True
    out = np.full(n, span - 1, dtype=np.int64)
    out[real_at] = gaps % span
    return out, real


def encode_codebook(weight: torch.Tensor, max_bits: int) -> EncodedTensor:
    """The smaller of the dense and sparse layouts of a weight with <= 2**max_bits values."""
    dname = dtype_name(weight.dtype)
    if dname not in _FLOAT_DTYPES:
        raise ValueError(f"kmeans stores float weights, not {dname}")
    flat = weight.reshape(-1).numpy()
    values, inverse = np.unique(flat, return_inverse=True)
    if len(values) > 1 << max_bits:
        raise ValueError(f"{len(values)} distinct values do not fit {max_bits}-bit indices")
    shape = tuple(weight.shape)
    bits = max(1, math.ceil(math.log2(max(len(values), 1))))
    dense = EncodedTensor("codebook", shape, dname, {"layout": "dense", "bits": bits}, {
        "codebook": Blob(values.tobytes()),
        "indices": Blob(pack(inverse, bits), params={"symbol_bits": bits}),
    })
    if not (values == 0).any():
        return dense
    # sparse: codebook[0] = 0 serves the fillers; the nonzeros index the rest
    nonzero_values = values[values != 0]
    codebook = np.concatenate([np.zeros(1, dtype=values.dtype), nonzero_values])
    positions = np.flatnonzero(flat)
    index_of = np.searchsorted(nonzero_values, flat[positions]) + 1
    # every gap width's entry count follows from the gaps alone: build only the best one
    skipped = np.diff(positions, prepend=-1) - 1
    size, gap_bits = min(
        (packed_size(n, g) + packed_size(n, bits), g)
        for g in range(1, 17) for n in [len(skipped) + int((skipped >> g).sum())])
    if size >= len(dense.blobs["indices"].data):
        return dense
    gaps, real = _gap_entries(positions, gap_bits)
    entry_index = np.zeros(len(gaps), dtype=np.int64)
    entry_index[real] = index_of
    return EncodedTensor(
        "codebook", shape, dname,
        {"layout": "sparse", "bits": bits, "gap_bits": gap_bits, "entries": len(gaps)},
        {"codebook": Blob(codebook.tobytes()),
         "indices": Blob(pack(entry_index, bits), params={"symbol_bits": bits}),
         "gaps": Blob(pack(gaps, gap_bits), params={"symbol_bits": gap_bits})},
    )


@register_encoding("codebook")
def decode_codebook(et: EncodedTensor, blobs: dict[str, bytes]) -> torch.Tensor:
    p = et.params
    if et.dtype not in _FLOAT_DTYPES:
        raise ArtifactError(f"codebook tensor of dtype {et.dtype!r}; valid: "
                            f"{', '.join(_FLOAT_DTYPES)}")
    np_dtype = _FLOAT_DTYPES[et.dtype]
    raw = blobs["codebook"]
    if len(raw) % np.dtype(np_dtype).itemsize:
        raise ArtifactError(f"codebook of {len(raw)} bytes is not a whole number of values")
    codebook = np.frombuffer(raw, dtype=np_dtype)
    n = math.prod(et.shape)
    bits = int(p["bits"])
    if not 1 <= bits <= 16 or len(codebook) > 1 << bits:
        raise ArtifactError(f"codebook of {len(codebook)} values with {bits}-bit indices")
    if p["layout"] == "dense":
        index = unpack(blobs["indices"], bits, n)
        out = _lookup(codebook, index)
    elif p["layout"] == "sparse":
        m, gap_bits = int(p["entries"]), int(p["gap_bits"])
        if not 0 <= m <= n or not 1 <= gap_bits <= 16:
            raise ArtifactError(f"sparse codebook tensor with {m} entries for {n} weights")
        positions = np.cumsum(unpack(blobs["gaps"], gap_bits, m).astype(np.int64) + 1) - 1
        if m and positions[-1] >= n:
            raise ArtifactError("sparse codebook entries run past the tensor's end")
        out = np.zeros(n, dtype=np_dtype)
        out[positions] = _lookup(codebook, unpack(blobs["indices"], bits, m))
    else:
        raise ArtifactError(f"unknown codebook layout {p['layout']!r}; valid: dense, sparse")
    return torch.from_numpy(np.ascontiguousarray(out)).to(torch_dtype(et.dtype)).reshape(
        et.shape)


def _lookup(codebook: np.ndarray, index: np.ndarray) -> np.ndarray:
    if len(index) and int(index.max()) >= len(codebook):
        raise ArtifactError(f"index {int(index.max())} outside a codebook of {len(codebook)}")
    return codebook[index.astype(np.int64)]
