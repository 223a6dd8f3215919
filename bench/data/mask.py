"""Blank rectangles of an image (e.g. a scale-bar overlay that could be a shortcut).

Rectangles are ``[x0, y0, x1, y1]`` in relative coordinates (0..1, origin at
the top-left corner, x to the right, y down); ``[0.8, 0.85, 1, 1]`` is the
lower-right corner. Covered pixels are set to 0 (black).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from bench.errors import UserError

Rect = Sequence[float]


def check_rects(rects: Sequence[Rect]) -> list[tuple[float, float, float, float]]:
    """``rects`` as float 4-tuples, or a UserError naming the bad rectangle."""
    if isinstance(rects, str | bytes) or not isinstance(rects, Sequence):
        raise UserError(f"mask must be a list of [x0, y0, x1, y1] rectangles, got {rects!r}")
    out = []
    for k, r in enumerate(rects):
        try:
            x0, y0, x1, y1 = (float(v) for v in r)
        except (TypeError, ValueError) as exc:
            raise UserError(
                f"mask rectangle {k} must be [x0, y0, x1, y1] numbers, got {r!r}"
            ) from exc
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in (x0, y0, x1, y1)):
            raise UserError(f"mask rectangle {k} {list(r)}: coordinates must be in [0, 1]")
        if not (x0 < x1 and y0 < y1):
            raise UserError(f"mask rectangle {k} {list(r)}: need x0 < x1 and y0 < y1")
        out.append((x0, y0, x1, y1))
    return out


def apply_mask(img: np.ndarray, rects: Sequence[Rect]) -> np.ndarray:
    """A copy of ``img`` (H, W, C) with every rectangle filled with 0."""
    boxes = check_rects(rects)
    if not boxes:
        return img
    out = img.copy()
    h, w = img.shape[:2]
    for x0, y0, x1, y1 in boxes:
        c0, c1 = math.floor(x0 * w), math.ceil(x1 * w)
        r0, r1 = math.floor(y0 * h), math.ceil(y1 * h)
        out[r0:r1, c0:c1] = 0
    return out


def mask_key(rects: Sequence[Rect]) -> str:
    """A short stable string for cache keys and records (``""`` for no mask)."""
    boxes = check_rects(rects)
    if not boxes:
        return ""
    return "mask[" + ";".join(",".join(f"{v:g}" for v in b) for b in boxes) + "]"


def mask_fns(rects: Sequence[Rect] | None) -> tuple[str, Callable[[np.ndarray], np.ndarray] | None]:
    """``(mask key, function blanking the rectangles | None)`` for ``rects`` (``None``: no mask).

    The key goes into feature-cache keys and the in-run decode memo's view; the
    function is applied to a decoded, resized image before any transform.
    """
    if not rects:
        return "", None
    key = mask_key(rects)
    return key, (lambda img: apply_mask(img, rects)) if key else None
