"""Decoding images to RGB uint8 arrays at a backbone's input size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def load_rgb(path: Path) -> Image.Image:
    """Open an image, apply its EXIF orientation and convert it to 8-bit RGB."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        return im.convert("RGB")


def decode_resized(path: Path, size: int, interpolation: str = "bilinear") -> np.ndarray:
    """The image at ``path`` as a ``(size, size, 3)`` uint8 RGB array."""
    im = load_rgb(path)
    if im.size != (size, size):
        im = im.resize((size, size), _RESAMPLE[interpolation])
    return np.asarray(im, dtype=np.uint8)
