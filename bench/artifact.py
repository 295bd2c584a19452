"""The artifact a run exports: the bytes `size_bytes` measures, and what `verify` reloads.

A model's state is a dict of tensors. Each tensor is held as an `EncodedTensor`: an
encoding name (how the blobs become a tensor again: `dense`, or one registered in
`methods/codecs/`, such as a sparse bitmask or a codebook) and named `Blob`s, each with a
codec (`raw`, or one registered there, such as Huffman) that turns its stored bytes back into the
blob's bytes. Pipeline stages transform this dict in order, so `prune+kmeans+huffman`
composes without any stage knowing the others.

A model whose tensors are all dense and raw is written as plain safetensors (what the
dense fp32 size means). Anything else goes into the segbench container:

    b"SEGBENCH" | u32 format version (2) | u64 header length | u32 CRC32 of the header
    | header (zlib-compressed UTF-8 JSON) | payload

The header names the model (zoo name, kwargs, classes), the pipeline stages with their
configs and metadata (so a stage can rebuild structure, e.g. pruned channels, before the
state loads), and for every tensor its encoding and its blobs' offsets, lengths, codecs
and CRC32s. The header is compressed because on small models it is a large share of the
file (ENet's pruned artifacts: 133 KB of JSON, 11 KB compressed), and checksummed
because stage metadata shapes the rebuilt model (a flipped hashing seed would otherwise
load a different network). Plain safetensors files carry in their metadata a CRC32 of
the tensor data section, one of the segbench metadata and one of the tensor index (names,
dtypes, shapes, offsets: swapping two same-shaped tensors fails; files written before the
index CRC existed are read without it). No pickle anywhere; a truncated or corrupted file
raises `ArtifactError`, and so does a header out of range (`bench.export.header_problem`).
"""

from __future__ import annotations

import importlib
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.atomic import atomic_write
from bench.registry import Registry

MAGIC = b"SEGBENCH"
FORMAT_VERSION = 2
_HEAD = struct.Struct("<8sIQI")  # magic, version, header length, header CRC32
_MAX_HEADER = 64 * 1024 * 1024


class ArtifactError(ValueError):
    """An artifact that cannot be read back: truncated, corrupted, or of unknown format."""


_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}


def dtype_name(dtype: torch.dtype) -> str:
    for k, v in _DTYPES.items():
        if v == dtype:
            return k
    raise ArtifactError(f"unsupported tensor dtype {dtype}; supported: {', '.join(_DTYPES)}")


def torch_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise ArtifactError(f"unknown dtype {name!r} in artifact") from None


@dataclass
class Blob:
    """Bytes plus how they were coded. `params` are JSON-able codec parameters."""

    data: bytes
    codec: str = "raw"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class EncodedTensor:
    encoding: str
    shape: tuple[int, ...]
    dtype: str  # dtype of the decoded tensor
    params: dict[str, Any] = field(default_factory=dict)  # JSON-able encoding parameters
    blobs: dict[str, Blob] = field(default_factory=dict)


# packages whose modules register encodings and codecs when imported; loaded by name on
# first use (discovery, not a dependency: they depend on this module, never the reverse),
# so any artifact decodes without importing a single method plugin. Other packages add
# theirs through the `segbench.codecs` entry-point group.
CODEC_PACKAGES = ("methods.codecs",)


def _load_codecs() -> None:
    for name in CODEC_PACKAGES:
        importlib.import_module(name)
    for ep in entry_points(group="segbench.codecs"):
        ep.load()


# encoding name -> decode(EncodedTensor with raw blob bytes) -> torch.Tensor
Decoder = Callable[[EncodedTensor, dict[str, bytes]], torch.Tensor]
ENCODINGS: Registry[Decoder] = Registry("encoding", loader=_load_codecs)
# codec name -> decode(data, params) -> bytes
CODECS: Registry[Callable[[bytes, dict[str, Any]], bytes]] = Registry("codec",
                                                                        loader=_load_codecs)


def register_encoding(name: str):
    def deco(fn):
        ENCODINGS.add(name, fn)
        return fn

    return deco


def register_codec(name: str):
    def deco(fn):
        CODECS.add(name, fn)
        return fn

    return deco


@register_codec("raw")
def _raw(data: bytes, params: dict[str, Any]) -> bytes:
    return data


def dense(t: torch.Tensor) -> EncodedTensor:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        data = t.view(torch.int16).numpy().tobytes()
    else:
        data = t.numpy().tobytes()
    return EncodedTensor("dense", tuple(t.shape), dtype_name(t.dtype), blobs={"data": Blob(data)})


@register_encoding("dense")
def _decode_dense(et: EncodedTensor, blobs: dict[str, bytes]) -> torch.Tensor:
    dt = torch_dtype(et.dtype)
    raw = blobs["data"]
    n = int(np.prod(et.shape)) if et.shape else 1
    if len(raw) != n * torch.empty(0, dtype=dt).element_size():
        raise ArtifactError(f"dense tensor of shape {et.shape} has {len(raw)} bytes")
    if n == 0:
        return torch.empty(et.shape, dtype=dt)
    if dt == torch.bfloat16:
        t = torch.frombuffer(bytearray(raw), dtype=torch.int16).view(torch.bfloat16)
        return t.reshape(et.shape)
    return torch.frombuffer(bytearray(raw), dtype=dt).reshape(et.shape).clone()


def encode_state(state: dict[str, torch.Tensor]) -> dict[str, EncodedTensor]:
    """Dense encodings; a tensor that is the same storage as an earlier one (a shared
    kernel, e.g. KSAC) becomes an `alias` of it, so shared weights are stored once."""
    out: dict[str, EncodedTensor] = {}
    seen: dict[tuple, str] = {}
    for k, v in state.items():
        key = (v.data_ptr(), tuple(v.shape), tuple(v.stride()), v.dtype) if v.numel() else None
        if key is not None and key in seen:
            out[k] = EncodedTensor("alias", tuple(v.shape), dtype_name(v.dtype),
                                   params={"of": seen[key]})
        else:
            if key is not None:
                seen[key] = k
            out[k] = dense(v)
    return out


def resolve_aliases(tensors: dict[str, EncodedTensor], state: dict[str, torch.Tensor]) -> None:
    for k, et in tensors.items():
        if et.encoding == "alias":
            src = et.params.get("of")
            if src not in state or tuple(state[src].shape) != tuple(et.shape):
                raise ArtifactError(f"alias {k!r} points to missing or mismatched {src!r}")
            state[k] = state[src]


def decode_tensor(et: EncodedTensor) -> torch.Tensor:
    if et.encoding == "alias":
        raise ArtifactError("an alias has no data of its own; decode it with its state")
    raw = {}
    for key, blob in et.blobs.items():
        raw[key] = CODECS.get(blob.codec)(blob.data, blob.params)
    t = ENCODINGS.get(et.encoding)(et, raw)
    if tuple(t.shape) != tuple(et.shape):
        raise ArtifactError(f"decoded tensor has shape {tuple(t.shape)}, header says {et.shape}")
    return t


def is_plain_dense(tensors: dict[str, EncodedTensor]) -> bool:
    return all(
        et.encoding == "alias"
        or (et.encoding == "dense" and all(b.codec == "raw" for b in et.blobs.values()))
        for et in tensors.values()
    )


def write_artifact(path: Path, header: dict[str, Any], tensors: dict[str, EncodedTensor]) -> Path:
    """Write `tensors` with the model `header`; returns the path actually written
    (`.safetensors` when every tensor is plain dense, `.sbz` otherwise)."""
    path = Path(path)
    if is_plain_dense(tensors):
        from safetensors.torch import save

        path = path.with_suffix(".safetensors")
        state = {k: decode_tensor(et) for k, et in tensors.items() if et.encoding != "alias"}
        aliases = {k: et.params["of"] for k, et in tensors.items() if et.encoding == "alias"}
        meta = {"segbench": json.dumps(header, sort_keys=True)}
        if aliases:
            meta["segbench_aliases"] = json.dumps(aliases, sort_keys=True)
        # one CRC for the whole tensor data section and one for the segbench metadata: two
        # numbers, not one per tensor. The data section's offsets are relative to its own
        # start, so the metadata is added by rewriting only the JSON header (padded with
        # spaces to 8 bytes, as the format allows): one serialisation, not two
        first = save(state, metadata=meta)
        n = struct.unpack_from("<Q", first)[0]
        body = memoryview(first)[8 + n :]
        head = json.loads(first[8 : 8 + n])
        head.setdefault("__metadata__", {})["segbench_crc32"] = json.dumps(
            {"data": zlib.crc32(body), "header": _meta_crc(meta), "index": _index_crc(head)},
            sort_keys=True)
        blob = json.dumps(head, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)

        def write_st(f):
            f.write(struct.pack("<Q", len(blob)))
            f.write(blob)
            f.write(body)

        atomic_write(path, write_st)
        return path
    path = path.with_suffix(".sbz")
    entries, chunks, offset = [], [], 0
    for name, et in tensors.items():
        blobs = {}
        for key, blob in et.blobs.items():
            blobs[key] = {
                "offset": offset,
                "length": len(blob.data),
                "crc32": zlib.crc32(blob.data),
                "codec": blob.codec,
                "params": blob.params,
            }
            chunks.append(blob.data)
            offset += len(blob.data)
        entries.append(
            {"name": name, "encoding": et.encoding, "shape": list(et.shape), "dtype": et.dtype,
             "params": et.params, "blobs": blobs}
        )
    head = zlib.compress(json.dumps({**header, "tensors": entries, "payload_length": offset},
                                    sort_keys=True, separators=(",", ":")).encode(), 9)

    def write(f):
        f.write(_HEAD.pack(MAGIC, FORMAT_VERSION, len(head), zlib.crc32(head)))
        f.write(head)
        for c in chunks:
            f.write(c)

    atomic_write(path, write)
    return path


def read_artifact(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Return (header, decoded state dict). Raises ArtifactError on any malformed input."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"artifact {path} does not exist")
    data = path.read_bytes()
    if path.suffix == ".safetensors" or not data.startswith(MAGIC):
        return _read_safetensors(path, data)
    if len(data) < _HEAD.size:
        raise ArtifactError(f"{path}: truncated before the header ({len(data)} bytes)")
    magic, version, hlen, crc = _HEAD.unpack_from(data)
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format version {version}, this code reads {FORMAT_VERSION}")
    if hlen > _MAX_HEADER or _HEAD.size + hlen > len(data):
        raise ArtifactError(f"{path}: truncated or corrupt header (length {hlen})")
    head = data[_HEAD.size : _HEAD.size + hlen]
    if zlib.crc32(head) != crc:
        raise ArtifactError(f"{path}: header checksum mismatch")
    try:
        header = json.loads(zlib.decompress(head).decode())
        entries = header.pop("tensors")
        payload_len = int(header.pop("payload_length"))
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("blobs", {}), dict) for e in entries
        ):
            raise TypeError("tensor entries must be objects with a `blobs` object")
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
            ValueError, AttributeError) as e:
        raise ArtifactError(f"{path}: corrupt header ({e})") from None
    payload = memoryview(data)[_HEAD.size + hlen :]
    if len(payload) != payload_len:
        raise ArtifactError(f"{path}: payload is {len(payload)} bytes, header says {payload_len}")
    state, aliases = {}, {}
    for e in entries:
        if e.get("encoding") == "alias":
            aliases[e["name"]] = EncodedTensor("alias", tuple(e["shape"]), e["dtype"],
                                               e.get("params", {}))
            continue
        try:
            blobs = {}
            for key, b in e["blobs"].items():
                off, ln = int(b["offset"]), int(b["length"])
                if off < 0 or ln < 0 or off + ln > payload_len:
                    raise ArtifactError(f"blob {key} lies outside the payload")
                chunk = bytes(payload[off : off + ln])
                if zlib.crc32(chunk) != b["crc32"]:
                    raise ArtifactError(f"checksum mismatch in blob {key}")
                blobs[key] = Blob(chunk, b["codec"], b.get("params", {}))
            et = EncodedTensor(e["encoding"], tuple(int(s) for s in e["shape"]), e["dtype"],
                               e.get("params", {}), blobs)
            state[e["name"]] = decode_tensor(et)
        except ArtifactError as err:
            raise ArtifactError(f"{path}: tensor {e.get('name')!r}: {err}") from None
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
            raise ArtifactError(
                f"{path}: tensor {e.get('name')!r} cannot be decoded ({err})"
            ) from None
    try:
        resolve_aliases(aliases, state)
    except ArtifactError as err:
        raise ArtifactError(f"{path}: {err}") from None
    return header, state


def _read_safetensors(path: Path, data: bytes):
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        n = struct.unpack_from("<Q", data)[0] if len(data) >= 8 else -1
        if n < 0 or 8 + n > len(data):
            raise ArtifactError(f"{path}: truncated safetensors file")
        head = json.loads(data[8 : 8 + n])
        meta = head.get("__metadata__", {})
        crcs = json.loads(meta["segbench_crc32"])
        if _meta_crc(meta) != crcs.get("header"):
            raise ArtifactError(f"{path}: header checksum mismatch")
        # files written before the index was checksummed have no "index" CRC: still read
        if "index" in crcs and _index_crc(head) != crcs["index"]:
            raise ArtifactError(f"{path}: checksum mismatch in the tensor index")
        if zlib.crc32(data[8 + n :]) != crcs.get("data"):
            raise ArtifactError(f"{path}: checksum mismatch in the tensor data")
        header = json.loads(meta["segbench"])
        state = load(data)
        for k, src in json.loads(meta.get("segbench_aliases", "{}")).items():
            if src not in state:
                raise ArtifactError(f"{path}: alias {k!r} points to missing {src!r}")
            state[k] = state[src]
    except ArtifactError:
        raise
    except (SafetensorError, KeyError, ValueError, TypeError, UnicodeDecodeError,
            struct.error) as e:
        raise ArtifactError(f"{path}: not a readable segbench artifact ({e})") from None
    return header, state


def _meta_crc(meta: dict[str, str]) -> int:
    return zlib.crc32((meta["segbench"] + meta.get("segbench_aliases", "")).encode())


def _index_crc(head: dict[str, Any]) -> int:
    """CRC32 of the safetensors header without our own checksum entry: every tensor's
    name, dtype, shape and offsets, so two same-shaped tensors' offsets cannot be swapped
    behind the data CRC (which covers the bytes, not which tensor they belong to)."""
    index = {k: v for k, v in head.items() if k != "__metadata__"}
    index["__metadata__"] = {k: v for k, v in head.get("__metadata__", {}).items()
                             if k != "segbench_crc32"}
    return zlib.crc32(json.dumps(index, sort_keys=True, separators=(",", ":")).encode())


def state_bytes_dense(state: dict[str, torch.Tensor]) -> int:
    """Size of `state` as dense safetensors, without writing it: the dense reference size."""
    from safetensors.torch import save

    tensors = encode_state(state)
    unique = {k: v.detach().cpu().contiguous() for k, v in state.items()
              if tensors[k].encoding != "alias"}
    return len(save(unique))
