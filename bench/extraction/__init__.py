"""Feature extraction: the public face (``extract_features``) over the CPU lanes, the
general device loop and the CUDA JPEG pipeline."""

from bench.features import (
    DecodedImages,
    ExtractionResult,
    default_batch_size,
    extract_features,
    resize_uint8,
    sample_keys,
)

__all__ = [
    "DecodedImages",
    "ExtractionResult",
    "default_batch_size",
    "extract_features",
    "resize_uint8",
    "sample_keys",
]
