"""segbench: a benchmark of compression methods on semantic-segmentation models."""

__version__ = "0.1.0"
