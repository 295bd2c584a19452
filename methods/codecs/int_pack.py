"""Integer codes packed at their bit-width: the `int_packed` artifact encoding.

A 4-bit weight costs half a byte on disk, not the byte of its int8 container: codes are
offset to unsigned (`code - qmin`), written `bits` bits each, least significant bit first,
into one byte string (numpy's packbits), so two 4-bit or four 2-bit codes share a byte and
3-, 5-, 6- and 7-bit codes straddle bytes. The decoder reverses it exactly and rejects
blobs of the wrong length, so a truncated artifact cannot load.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.artifact import ArtifactError, Blob, EncodedTensor, register_encoding

ENCODING = "int_packed"


def pack_codes(codes: np.ndarray, bits: int, qmin: int) -> bytes:
    """Pack integer `codes` (each in [qmin, qmin + 2**bits)) into ceil(n * bits / 8) bytes."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bit-width must be 1..8, got {bits}")
    u = codes.astype(np.int64).ravel() - qmin
    if u.size and (u.min() < 0 or u.max() >= 2**bits):
        raise ValueError(f"codes outside the {bits}-bit range starting at {qmin}: "
                         f"[{int(u.min()) + qmin}, {int(u.max()) + qmin}]")
    if bits == 8:
        return u.astype(np.uint8).tobytes()
    planes = (u[:, None] >> np.arange(bits)) & 1  # (n, bits), LSB first
    return np.packbits(planes.astype(np.uint8).ravel(), bitorder="little").tobytes()


def unpack_codes(data: bytes, n: int, bits: int, qmin: int) -> np.ndarray:
    """Inverse of `pack_codes`: `n` codes as int64."""
    need = (n * bits + 7) // 8
    if len(data) != need:
        raise ArtifactError(f"{n} codes of {bits} bits need {need} bytes, blob has {len(data)}")
    raw = np.frombuffer(data, dtype=np.uint8)
    if bits == 8:
        return raw.astype(np.int64) + qmin
    planes = np.unpackbits(raw, bitorder="little")[: n * bits].reshape(n, bits)
    return (planes.astype(np.int64) << np.arange(bits)).sum(1) + qmin


def encode_int_tensor(t: torch.Tensor, bits: int, qmin: int) -> EncodedTensor:
    """An int8 tensor of `bits`-bit codes as an `int_packed` EncodedTensor."""
    if t.dtype != torch.int8:
        raise TypeError(f"int_packed stores int8 code tensors, got {t.dtype}")
    data = pack_codes(t.detach().cpu().numpy(), bits, qmin)
    return EncodedTensor(ENCODING, tuple(t.shape), "int8", params={"bits": bits, "qmin": qmin},
                         blobs={"codes": Blob(data)})


@register_encoding(ENCODING)
def _decode(et: EncodedTensor, blobs: dict[str, bytes]) -> torch.Tensor:
    bits, qmin = int(et.params["bits"]), int(et.params["qmin"])
    if et.dtype != "int8" or not 1 <= bits <= 8 or qmin < -128 or qmin + 2**bits - 1 > 127:
        raise ArtifactError(f"int_packed: bad parameters bits={bits} qmin={qmin} "
                            f"dtype={et.dtype}")
    n = int(np.prod(et.shape)) if et.shape else 1
    codes = unpack_codes(blobs["codes"], n, bits, qmin)
    return torch.from_numpy(codes.astype(np.int8)).reshape(et.shape)
