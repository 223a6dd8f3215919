"""ImageSet: the engine's view of a labelled image collection, and its expansion into samples."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

POSITIVE_DEFAULTS = ("leukemia", "all", "blast", "leukaemia", "cancer", "malignant")


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Paths, integer labels, class names and split groups of one dataset.

    ``groups[i]`` is the split group of image ``i``: a patient id where the
    dataset knows it, else the image's own relative path (one group per source
    image). ``positive`` is the class name that counts as positive in binary
    metrics (``None`` for multi-class sets).
    """

    name: str
    paths: tuple[Path, ...]
    labels: np.ndarray
    classes: tuple[str, ...]
    groups: tuple[str, ...]
    positive: str | None = None
    root: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.paths)
        if len(self.labels) != n or len(self.groups) != n:
            raise ValueError("paths, labels and groups must have the same length")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def positive_index(self) -> int | None:
        return None if self.positive is None else self.classes.index(self.positive)

    def relpath(self, i: int) -> str:
        """Path of image ``i`` relative to ``root`` (POSIX), or absolute."""
        p = self.paths[i]
        if self.root is not None:
            try:
                return p.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return p.as_posix()

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(k) for c, k in zip(self.classes, counts)}

    def subset(self, indices: np.ndarray | list[int], **meta: Any) -> ImageSet:
        """A new ImageSet with only ``indices`` (order kept)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ImageSet(
            name=self.name,
            paths=tuple(self.paths[i] for i in idx),
            labels=self.labels[idx],
            classes=self.classes,
            groups=tuple(self.groups[i] for i in idx),
            positive=self.positive,
            root=self.root,
            meta={**self.meta, **meta},
        )


def default_positive(classes: tuple[str, ...] | list[str]) -> str | None:
    """The positive class for binary metrics: a leukemia-like name, else the second class."""
    if len(classes) != 2:
        return None
    for c in classes:
        if c.lower() in POSITIVE_DEFAULTS:
            return c
    return classes[1]


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Transform:
    """One deterministic augmentation of a source image (``identity`` = the original).

    Applied to a decoded, resized uint8 image by :func:`bench.data.augment.apply_transform`.
    ``dx``/``dy`` translate in pixels (signed), ``flip`` mirrors about the
    vertical axis, ``angle`` rotates in degrees (positive = counter-clockwise).
    """

    kind: str = "identity"
    dx: int = 0
    dy: int = 0
    flip: bool = False
    angle: float = 0.0

    def key(self) -> str:
        """A short stable string used in cache keys and records."""
        if self.kind == "identity":
            return "id"
        return f"{self.kind}:dx={self.dx},dy={self.dy},flip={int(self.flip)},angle={self.angle:g}"


IDENTITY = Transform()


@dataclass(frozen=True, eq=False)
class Samples:
    """What a protocol actually sees: (source image, transform) pairs.

    Without augmentation there is one sample per image with the identity
    transform. Every augmented copy keeps its source image's label and group,
    so grouped splits never separate copies of one image.
    """

    imageset: ImageSet
    source: np.ndarray  # int64 index into imageset, one per sample
    transforms: tuple[Transform, ...]

    def __len__(self) -> int:
        return len(self.source)

    @property
    def labels(self) -> np.ndarray:
        return self.imageset.labels[self.source]

    @property
    def groups(self) -> np.ndarray:
        return np.asarray(self.imageset.groups, dtype=object)[self.source]

    @classmethod
    def originals(cls, imageset: ImageSet) -> Samples:
        n = len(imageset)
        return cls(imageset, np.arange(n, dtype=np.int64), (IDENTITY,) * n)
