"""Class balancing: seeded undersampling (the paper's balanced 282:282 design)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.data.imageset import ImageSet
from bench.errors import UserError

BALANCE_METHODS = ("none", "undersample")


def undersample(imageset: ImageSet, *, seed: int = 0) -> tuple[ImageSet, dict[str, Any]]:
    """Keep a seeded random ``min(class count)`` images of every class (order kept).

    Returns the balanced set and ``{"method", "seed", "before", "after"}`` with
    class counts before and after.
    """
    before = imageset.class_counts()
    present = {c: k for c, k in before.items() if k > 0}
    if len(present) < 2:
        raise UserError(f"undersample needs at least 2 classes with images, got {before}")
    target = min(present.values())
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for k in range(len(imageset.classes)):
        idx = np.flatnonzero(imageset.labels == k)
        if len(idx):
            keep += rng.choice(idx, size=target, replace=False).tolist()
    out = imageset.subset(np.sort(np.asarray(keep, dtype=np.int64)), balance="undersample")
    info = {"method": "undersample", "seed": seed, "before": before, "after": out.class_counts()}
    return out, info
