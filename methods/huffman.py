"""Huffman coding as a lossless storage stage (Huffman 1952; stage three of Deep
Compression). It changes no weight: it walks every tensor's blobs and replaces each raw
blob by its canonical Huffman coding (codec `huffman`, methods/codecs/huffman.py) wherever that
is smaller, so it composes after any encoding: the b-bit indices and index gaps of
`kmeans`, a pruning stage's sparse format, or plain dense floats (which barely compress:
an honest result).

The symbols of a blob are its elements: a blob that declares `symbol_bits` in its params
(packed indices) is read at that width; a dense tensor at its dtype's width; every blob is
also tried as bytes and as 16- and 32-bit words, and the smallest coding wins. `check`
compares a digest of the loaded state with the one taken before encoding; the run calls it
on the model it reloads from the artifact (so a coding that did not round-trip fails the
run), and `verify` calls it again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from bench.artifact import ArtifactError, Blob, EncodedTensor, torch_dtype
from bench.facts import Fact
from bench.method import Method, register_method
from methods.codecs import huffman as codec

_WORD_BITS = (8, 16, 32)
_MIN_BLOB = 16  # bytes; below this the code table alone outweighs any saving


def candidate_widths(et: EncodedTensor, key: str, blob: Blob) -> list[int]:
    """Symbol widths (bits) worth trying for one blob."""
    widths = set()
    declared = blob.params.get("symbol_bits")
    if isinstance(declared, int) and 1 <= declared <= 32:
        widths.add(declared)
    if et.encoding == "dense":
        try:
            widths.add(8 * torch.empty(0, dtype=torch_dtype(et.dtype)).element_size())
        except ArtifactError:
            pass
    widths.update(w for w in _WORD_BITS if len(blob.data) % (w // 8) == 0)
    return sorted(w for w in widths if w <= 32)


def huffman_blob(et: EncodedTensor, key: str, blob: Blob) -> Blob:
    """The smallest of the blob and its Huffman codings at the candidate widths. Widths are
    tried in order of their entropy bound and sized exactly from their code lengths; only the
    winner's bitstream is written."""
    if blob.codec != "raw" or len(blob.data) < _MIN_BLOB:
        return blob
    plans = []
    for w in candidate_widths(et, key, blob):
        plan = codec.Plan(blob.data, w)
        if plan.codable and plan.lower_bound() < len(blob.data):
            plans.append((plan.lower_bound(), w, plan))
    best_size, best = len(blob.data), None
    for bound, _, plan in sorted(plans, key=lambda p: p[:2]):
        if bound >= best_size:
            break
        size = plan.coded_size()
        if size < best_size:
            best_size, best = size, plan
    return blob if best is None else Blob(codec.encode(best), "huffman", {})


def state_digest(model: nn.Module) -> str:
    """SHA-256 over the state dict's names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{t.numel()}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class HuffmanStats(Fact):
    """Blobs Huffman-coded (of all blobs) and the payload before and after."""

    key: ClassVar[str] = "huffman"
    blobs_coded: int
    blobs: int
    payload_bytes_before: int
    payload_bytes_after: int


@register_method("huffman", family="coding")
class HuffmanCoding(Method):
    """Lossless: canonical Huffman coding of every blob of the artifact."""

    version = 1

    def encode(self, ctx, model, tensors: dict[str, EncodedTensor]) -> dict[str, EncodedTensor]:
        out, before, after, coded = {}, 0, 0, 0
        for name, et in tensors.items():
            blobs = {k: huffman_blob(et, k, b) for k, b in et.blobs.items()}
            before += sum(len(b.data) for b in et.blobs.values())
            after += sum(len(b.data) for b in blobs.values())
            coded += sum(b.codec == "huffman" for b in blobs.values())
            out[name] = EncodedTensor(et.encoding, et.shape, et.dtype, et.params, blobs)
        ctx.report(HuffmanStats(blobs_coded=coded,
                                blobs=sum(len(e.blobs) for e in tensors.values()),
                                payload_bytes_before=before, payload_bytes_after=after))
        return out

    def artifact_meta(self, model: nn.Module) -> dict[str, Any]:
        return {"state_sha256": state_digest(model)}

    def check(self, model: nn.Module, meta: dict[str, Any]) -> list[str]:
        if "state_sha256" not in meta:
            return ["the header has no state digest"]
        if state_digest(model) != meta["state_sha256"]:
            return ["the loaded state differs from the state that was encoded"]
        return []
