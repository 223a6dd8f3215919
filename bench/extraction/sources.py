"""Source images for extraction: decoded and resized once per run, masked, then transformed.

:class:`DecodedImages` is the in-run memo shared by extraction and fine-tuning;
:class:`SourceImages` decodes one call's source images through it (two threads that
want one source at once decode it once) and counts the decodes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from bench.data.decode import decode_resized, decode_resized_fast
from bench.data.imageset import Transform
from bench.errors import BadImagesError

if TYPE_CHECKING:
    from bench.backbone import Backbone

View = tuple[int, str, str]  # (input size, interpolation, mask key [+ "|fast"])


class Source(Protocol):
    """A source image by file and content digest (a :class:`bench.extraction.jobs.Job`)."""

    path: Path
    digest: str


class DecodedImages:
    """In-run memo of decoded, resized uint8 source images.

    Keyed by ``(size, interpolation, mask key)`` and the image content digest,
    so a second backbone with the same input size, or every augmented copy of
    an image, reuses one decode. Holds at most ``max_bytes`` (later images are
    simply not memoised once full).
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._store: dict[View, dict[str, np.ndarray]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.decodes = 0

    def get(self, view: View, digest: str) -> np.ndarray | None:
        with self._lock:
            img = self._store.get(view, {}).get(digest)
            if img is not None:
                self.hits += 1
            return img

    def put(self, view: View, digest: str, img: np.ndarray) -> None:
        with self._lock:
            self.decodes += 1
            slot = self._store.setdefault(view, {})
            if digest in slot or self.nbytes + img.nbytes > self.max_bytes:
                return
            img.setflags(write=False)
            slot[digest] = img
            self.nbytes += img.nbytes

    def __len__(self) -> int:
        return sum(len(v) for v in self._store.values())


def transform_image(img: np.ndarray, t: Transform) -> np.ndarray:
    """``img`` with the sample's augmentation transform applied (identity: ``img`` itself)."""
    if t.kind == "identity":
        return img
    from bench.data.augment import apply_transform

    return apply_transform(img, t)


class SourceImages:
    """One extraction call's source images as uint8 HWC at the backbone's input size."""

    def __init__(
        self,
        backbone: Backbone,
        *,
        mask_fn: Callable[[np.ndarray], np.ndarray] | None,
        mkey: str,
        decoded: DecodedImages | None,
        fast: bool = False,
    ) -> None:
        self.size = backbone.input_size
        self.interpolation = backbone.interpolation
        self.mask_fn = mask_fn
        # the in-run memo keeps the two decoders' pixels apart
        self.view: View = (self.size, self.interpolation, mkey + ("|fast" if fast else ""))
        self.decode = decode_resized_fast if fast else decode_resized
        self.decoded = decoded
        self.n_decoded = 0
        self._lock = threading.Lock()
        self._pending: dict[str, threading.Event] = {}

    def remembered(self, digest: str) -> np.ndarray | None:
        """The memo's image of ``digest``, if the memo holds any image at all."""
        return self.decoded.get(self.view, digest) if self.decoded else None

    def image(self, job: Source) -> np.ndarray:
        """The job's source image (from the memo, or decoded once and remembered)."""
        if self.decoded is None:
            return self._decode(job)
        img = self.decoded.get(self.view, job.digest)
        if img is not None:
            return img
        # Two lanes may want one source at once (its copies span batches): one decodes.
        with self._lock:
            pending = self._pending.get(job.digest)
            mine = pending is None
            if mine:
                pending = self._pending[job.digest] = threading.Event()
        if not mine:
            pending.wait()
            img = self.decoded.get(self.view, job.digest)
            if img is not None:
                return img
            return self._decode(job)  # the memo was full
        try:
            img = self._decode(job)
            self.decoded.put(self.view, job.digest, img)
            return img
        finally:
            with self._lock:
                del self._pending[job.digest]
            pending.set()

    def _decode(self, job: Source) -> np.ndarray:
        try:
            img = self.decode(job.path, self.size, self.interpolation)
        except (OSError, ValueError) as exc:
            raise BadImagesError([(str(job.path), f"cannot decode: {exc}")]) from exc
        if self.mask_fn is not None:
            img = self.mask_fn(img)
        with self._lock:
            self.n_decoded += 1
        return img
