"""The shared job layer every extraction strategy works over.

A :class:`Job` is one source image and the missing samples derived from it; a
:class:`Work` is one call's jobs and where their features go; :class:`RowFiller`
writes computed vectors into the result (and into rows that share a cache key);
:class:`Setup` is what a strategy runs with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.data.imageset import Transform

if TYPE_CHECKING:
    from bench.backbone import Backbone
    from bench.extraction.sources import SourceImages
    from bench.feature_cache import FeatureCache


@dataclass
class Job:
    """One source image and the missing samples (row, transform) derived from it."""

    source: int
    path: Path
    digest: str
    rows: list[tuple[int, Transform]]


@dataclass
class Work:
    """One call's missing samples, and where their features go."""

    jobs: list[Job]
    keys: list[str]  # every sample's cache key
    todo: dict[str, list[int]]  # missing key -> the rows that want it (the first is computed)
    features: np.ndarray  # the result, filled in place
    cache: FeatureCache | None
    progress: bool
    label: str

    @property
    def total(self) -> int:
        return sum(len(job.rows) for job in self.jobs)


@dataclass
class Setup:
    """What one extraction call runs with, whichever strategy runs it."""

    backbone: Backbone
    device: str
    batch_size: int
    workers: int  # CPU decode threads of the general device loop
    readers: int  # reader threads of the CUDA JPEG pipeline
    sources: SourceImages

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


class RowFiller:
    """Writes computed vectors into the result, and into the rows that share their key."""

    def __init__(self, keys: list[str], todo: dict[str, list[int]], features: np.ndarray) -> None:
        self.keys = keys
        self.features = features
        self.dups = {rows[0]: rows[1:] for rows in todo.values() if len(rows) > 1}

    def fill(self, rows: list[int], vecs: np.ndarray) -> None:
        first, n = rows[0], len(rows)
        if rows == list(range(first, first + n)):
            self.features[first : first + n] = vecs
        else:
            self.features[rows] = vecs
        if self.dups:
            for row, vec in zip(rows, vecs):
                for dup in self.dups.get(row, ()):
                    self.features[dup] = vec

    def computed(self, rows: list[int]) -> dict[str, np.ndarray]:
        """key -> vector of ``rows`` (already filled), for the cache."""
        keys, features = self.keys, self.features
        return {keys[row]: features[row] for row in rows}
