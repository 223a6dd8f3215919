"""Nested, stratified, grouped subsamples of a training fold (the learning curve's x axis).

Whole groups (patients or source images, with all their augmented copies) are
drawn, never single samples, so a subsample never splits a group and "n training
units" counts independent units. Per class, the groups of the training fold are
put in one seeded random order; the subsample at fraction ``f`` is the first
``ceil(f * n_c)`` groups of each class ``c`` (at least one). So every class keeps
its share (stratified), the sets are nested (a smaller fraction's groups are a
subset of every larger one's) and ``f = 1`` is the whole training fold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Subsample", "group_classes", "nested_subsets"]


@dataclass(frozen=True)
class Subsample:
    """The training rows kept at one fraction, and how many groups (units) they hold."""

    fraction: float
    rows: np.ndarray  # sorted indices into the full sample arrays
    n_units: int
    units_per_class: tuple[int, ...]


def group_classes(labels: np.ndarray, groups: np.ndarray) -> dict[str, int]:
    """Each group's class: the most frequent label among its samples (ties: smallest label)."""
    out: dict[str, int] = {}
    keys = np.asarray(groups, dtype=object).astype(str)
    for g in np.unique(keys):
        counts = np.bincount(np.asarray(labels)[keys == g])
        out[str(g)] = int(np.argmax(counts))
    return out


def nested_subsets(
    train: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    fractions: Sequence[float],
    seed: Sequence[int] | int,
) -> list[Subsample]:
    """One :class:`Subsample` of ``train`` per fraction (same order as ``fractions``).

    ``labels`` and ``groups`` cover all samples; ``train`` indexes them. ``seed``
    (an int or a sequence, e.g. ``(seed, fold, repeat)``) fixes the group order.
    """
    train = np.sort(np.asarray(train, dtype=np.int64))
    keys = np.asarray(groups, dtype=object)[train].astype(str)
    y = np.asarray(labels)[train]
    owner = group_classes(y, keys)
    classes = sorted(set(owner.values()))
    rng = np.random.default_rng(seed)
    order: dict[int, list[str]] = {}
    for c in classes:
        names = sorted(g for g, k in owner.items() if k == c)
        order[c] = [names[i] for i in rng.permutation(len(names))]
    out = []
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"fraction {f!r} is not in (0, 1]")
        chosen: set[str] = set()
        per_class = []
        for c in classes:
            k = min(len(order[c]), max(1, math.ceil(f * len(order[c]) - 1e-9)))
            chosen.update(order[c][:k])
            per_class.append(k)
        rows = train[np.isin(keys, list(chosen))]
        out.append(Subsample(float(f), rows, len(chosen), tuple(per_class)))
    return out
