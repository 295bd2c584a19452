"""Datasets: the embedded synthetic default and loaders for real data on local disk."""

from bench.data import camvid, cityscapes, synthetic, voc  # noqa: F401  (registration)
from bench.data.base import DATASETS, SPLITS, DatasetInfo, DatasetLayoutError, register_dataset

__all__ = ["DATASETS", "SPLITS", "DatasetInfo", "DatasetLayoutError", "register_dataset"]
