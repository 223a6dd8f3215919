"""Model 2's images in memory: decoded once, masked, transformed per sample; validation carve."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from bench.data.imageset import Samples, Transform
from bench.errors import BadImagesError


def mask_fns(mask: Any) -> tuple[str, Callable[[np.ndarray], np.ndarray] | None]:
    """``(mask key, function blanking the rectangles | None)`` for the suite's ``data.mask``."""
    if not mask:
        return "", None
    from bench.data.mask import apply_mask, mask_key

    key = mask_key(mask)
    return key, (lambda img: apply_mask(img, mask)) if key else None


# -- images in memory ------------------------------------------------------------------
class ImageBank:
    """Every needed source image decoded once (uint8 HWC), masked, then transformed per sample.

    With ``decoded`` and ``digests`` (content digest per image of the image set),
    decodes go through that in-run memo (:class:`bench.extraction.DecodedImages`),
    shared with feature extraction and other fine-tuning cells of the same view.
    """

    def __init__(
        self,
        samples: Samples,
        sources: np.ndarray,
        size: int,
        interpolation: str,
        mean: Sequence[float],
        std: Sequence[float],
        mask: Any = None,
        *,
        decoded: Any = None,
        digests: Sequence[str] | None = None,
    ) -> None:
        from bench.data import decode

        self.samples = samples
        self.size = size
        self.images: dict[int, np.ndarray] = {}
        memo = decoded if digests is not None else None
        mkey, mask_fn = mask_fns(mask)
        view = (size, interpolation, mkey)
        problems: list[tuple[str, str]] = []
        for src in sorted({int(s) for s in sources}):
            img = memo.get(view, digests[src]) if memo is not None else None
            if img is None:
                path = samples.imageset.paths[src]
                try:
                    img = decode.decode_resized(path, size, interpolation)
                except Exception as exc:  # noqa: BLE001 - Pillow raises many types
                    problems.append((str(path), f"{type(exc).__name__}: {exc}"))
                    continue
                if mask_fn is not None:
                    img = mask_fn(img)
                img = np.ascontiguousarray(img)
                if memo is not None:
                    memo.put(view, digests[src], img)
            self.images[src] = img
        if problems:
            raise BadImagesError(problems, hint="fix or remove them (or run with --skip-bad)")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0

    def image(self, i: int, transform: Transform | None = None) -> np.ndarray:
        """Sample ``i`` as uint8 HWC (``transform`` replaces the sample's own when given)."""
        img = self.images[int(self.samples.source[i])]
        t = self.samples.transforms[i] if transform is None else transform
        if t.kind != "identity":
            from bench.data.augment import apply_transform

            img = apply_transform(img, t)
        return img

    def batch(
        self, indices: Sequence[int], transforms: Sequence[Transform] | None = None
    ) -> torch.Tensor:
        """A normalised float batch ``(N, 3, S, S)`` for sample ``indices``."""
        imgs = [
            self.image(i, None if transforms is None else transforms[j])
            for j, i in enumerate(indices)
        ]
        x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float()
        return (x - self.mean) / self.std


def normalise_uint8(batch: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW (the exact arithmetic training uses)."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
    return (x - m) / s


# -- validation carve ----------------------------------------------------------------
def carve_validation(
    train_idx: np.ndarray, groups: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``train_idx`` into (fit, val) by whole groups, ~``fraction`` of samples to val.

    Groups are taken per class (by each group's majority label) in a seeded
    order, so both classes appear in the validation side when they can.
    """
    train_idx = np.asarray(train_idx, dtype=np.int64)
    if fraction <= 0:
        return train_idx, np.empty(0, dtype=np.int64)
    g = groups[train_idx]
    uniq, inverse = np.unique(g.astype(str), return_inverse=True)
    sizes = np.bincount(inverse)
    glabel = np.array(
        [np.bincount(labels[train_idx][inverse == k]).argmax() for k in range(len(uniq))]
    )
    rng = np.random.default_rng(seed)
    val_groups: list[int] = []
    for c in np.unique(glabel):
        members = np.flatnonzero(glabel == c)
        members = members[rng.permutation(len(members))]
        target = fraction * sizes[members].sum()
        taken = 0
        for k in members[:-1]:  # always leave the class one group for fitting
            if taken >= target:
                break
            val_groups.append(int(k))
            taken += sizes[k]
    in_val = np.isin(inverse, val_groups)
    return train_idx[~in_val], train_idx[in_val]
