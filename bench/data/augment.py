"""The paper's augmentation (``loey2020``): translation, reflection, rotation, x5.

Loey et al. expand 564 images to 2,820 (x5) with three operations. Our x5 is
the original plus four copies, in this fixed order:

1. ``translate``: shift by a random integer in [15, 25] px along x *and* y,
   each with a random sign; uncovered pixels are black.
2. ``reflect``: mirror about the vertical axis (left <-> right).
3. ``rotate``: rotate about the centre by a random angle in {25, 30, ..., 125}
   degrees, left (counter-clockwise) or right; bilinear, output the same size
   with black corners (MATLAB ``imrotate(..., 'bilinear', 'crop')``).
4. ``composite``: reflect, then rotate, then translate, each with fresh random
   parameters (a fourth copy that is still one of the paper's operations).

Copies beyond 5 cycle through the four kinds again with fresh parameters.
Random parameters are drawn from a generator seeded by ``(seed, relative
path)``, so adding or removing an image never changes another image's copies.

Transform offsets are in pixels at the paper's 227x227 input; at another input
size they are scaled proportionally (``dx * width / 227``, rounded).
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from bench.data.imageset import IDENTITY, ImageSet, Samples, Transform
from bench.errors import UserError

SCHEMES = ("none", "loey2020")
REFERENCE_SIZE = 227
COPY_KINDS = ("translate", "reflect", "rotate", "composite")
SHIFT_RANGE = (15, 25)
ANGLES = tuple(range(25, 126, 5))


def _shift(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Translate by integer pixels (positive dx = right, positive dy = down), black fill."""
    h, w = img.shape[:2]
    out = np.zeros_like(img)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = img[ys, xs]
    return out


def _rotate(img: np.ndarray, angle: float) -> np.ndarray:
    """Rotate about the centre (positive = counter-clockwise), bilinear, same size, black fill."""
    im = Image.fromarray(img)
    return np.asarray(
        im.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=(0, 0, 0))
    )


def apply_transform(
    img: np.ndarray, t: Transform, *, reference_size: int = REFERENCE_SIZE
) -> np.ndarray:
    """``img`` (H, W, 3) uint8 transformed by ``t``: flip, then rotate, then translate.

    ``t.dx``/``t.dy`` are pixels at ``reference_size``; they are scaled to the
    image's own width/height.
    """
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {img.shape} {img.dtype}")
    if t.kind == "identity":
        return img
    h, w = img.shape[:2]
    out = img
    if t.flip:
        out = out[:, ::-1]
    if t.angle:
        out = _rotate(np.ascontiguousarray(out), t.angle)
    if t.dx or t.dy:
        dx = int(round(t.dx * w / reference_size))
        dy = int(round(t.dy * h / reference_size))
        out = _shift(out, dx, dy)
    return np.ascontiguousarray(out)


def _signed(rng: np.random.Generator, low: int, high: int) -> int:
    return int(rng.integers(low, high + 1)) * (1 if rng.random() < 0.5 else -1)


def make_transform(rng: np.random.Generator, kind: str) -> Transform:
    """A random ``loey2020`` transform of the given kind (see the module docstring)."""
    if kind == "identity":
        return IDENTITY
    if kind == "translate":
        return Transform("translate", dx=_signed(rng, *SHIFT_RANGE), dy=_signed(rng, *SHIFT_RANGE))
    if kind == "reflect":
        return Transform("reflect", flip=True)
    if kind == "rotate":
        angle = float(ANGLES[rng.integers(len(ANGLES))]) * (1 if rng.random() < 0.5 else -1)
        return Transform("rotate", angle=angle)
    if kind == "composite":
        angle = float(ANGLES[rng.integers(len(ANGLES))]) * (1 if rng.random() < 0.5 else -1)
        dx, dy = _signed(rng, *SHIFT_RANGE), _signed(rng, *SHIFT_RANGE)
        return Transform("composite", dx=dx, dy=dy, flip=True, angle=angle)
    raise ValueError(f"unknown transform kind {kind!r}")


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise UserError(f"unknown augmentation scheme {scheme!r}; known: {', '.join(SCHEMES)}")


def random_transform(rng: np.random.Generator, scheme: str = "loey2020") -> Transform:
    """One random transform for on-the-fly augmentation (fine-tuning).

    Draws uniformly among identity and the four copy kinds, i.e. the same
    distribution as the x5 expanded set.
    """
    _check_scheme(scheme)
    if scheme == "none":
        return IDENTITY
    kinds = ("identity", *COPY_KINDS)
    return make_transform(rng, kinds[int(rng.integers(len(kinds)))])


def _image_rng(seed: int, relpath: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}\0{relpath}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def copy_transforms(seed: int, relpath: str, copies: int) -> list[Transform]:
    """The ``copies`` transforms of one image (copy 0 is the identity)."""
    rng = _image_rng(seed, relpath)
    out = [IDENTITY]
    for k in range(1, copies):
        out.append(make_transform(rng, COPY_KINDS[(k - 1) % len(COPY_KINDS)]))
    return out


def expand(
    imageset: ImageSet, *, scheme: str = "loey2020", copies: int = 5, seed: int = 0
) -> Samples:
    """Every image followed by its ``copies - 1`` augmented copies (same label and group)."""
    _check_scheme(scheme)
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise UserError(f"augmentation copies must be a positive integer, got {copies!r}")
    if scheme == "none" or copies == 1:
        return Samples.originals(imageset)
    source: list[int] = []
    transforms: list[Transform] = []
    for i in range(len(imageset)):
        ts = copy_transforms(seed, imageset.relpath(i), copies)
        source += [i] * len(ts)
        transforms += ts
    return Samples(imageset, np.asarray(source, dtype=np.int64), tuple(transforms))
