"""Datasets, validation, decoding, the paper's augmentation and leakage-safe splits."""

from bench.data.imageset import IDENTITY, ImageSet, Samples, Transform, default_positive

__all__ = ["IDENTITY", "ImageSet", "Samples", "Transform", "default_positive"]
