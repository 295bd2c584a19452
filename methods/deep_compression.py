"""Deep Compression (Han, Mao & Dally, ICLR 2016) as a named preset of the pipeline
`prune_unstructured+kmeans+huffman`: prune, fine-tune; share weights by k-means, fine-tune
the centroids; Huffman-code the cluster indices and the relative-index gaps.

The paper's settings, transferred to our all-convolutional segmentation networks:
* pruning keeps about 30 % of the convolution weights (VGG-16's conv layers keep 22-58 %,
  about a third overall, Table 5), one-shot magnitude pruning then retraining;
* 8-bit cluster indices for convolutions (the paper's choice for conv layers; its 5 bits
  were for fully connected layers, which these models do not have), linear centroid
  initialisation;
* Huffman coding of both index streams.

`--set bits=5` (or any other stage setting) applies on top, and the same pipeline runs
when written out as `prune_unstructured+kmeans+huffman`.
"""

from bench.method import register_pipeline

SPEC = "prune_unstructured+kmeans+huffman"
CONFIGS = [
    {"sparsity": 0.7},
    {"bits": 8, "first_last_bits": 8, "init": "linear"},
    {},
]

register_pipeline("deep_compression", SPEC, configs=CONFIGS, family="weight_sharing")
