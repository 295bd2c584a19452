"""Artifact encodings and codecs: how tensors and blobs are stored and read back.

Each module registers the encodings or codecs it defines when imported, and this package
imports them all, so `bench.artifact` can decode any artifact by importing `methods.codecs`
without loading a single plugin. Nothing here registers a method.

    bitpack    fixed-width unsigned fields packed into bytes (no registration)
    codebook   encoding `codebook`: a few shared values + packed indices (k-means)
    huffman    codec `huffman`: canonical Huffman coding of any blob
    int_pack   encoding `int_packed`: integer codes at their bit-width (quantization)
    sparse     encodings `sparse_bitmask`, `sparse_relidx` (pruning)
"""

from methods.codecs import bitpack, codebook, huffman, int_pack, sparse  # noqa: F401
