"""The ``synthetic`` dataset: procedurally drawn, seeded blood-smear fields.

SYNTHETIC DATA, for unit tests and the offline quickstart only. The images are
cartoons of a stained blood smear (pink background, pale red cells with central
pallor, one white cell per field); ``healthy`` fields show a mature white cell
(small dense or multi-lobed nucleus with plenty of cytoplasm), ``leukemia``
fields show a blast (large round nucleus filling most of the cell, fine
chromatin texture, visible nucleoli). Numbers measured on it say nothing about
real leukemia detection.

Images are drawn once and cached as PNGs under
``$LEUKOBENCH_CACHE/synthetic/<params-digest>/<class>/NNNN.png``, with the
SHA-256 of every file in ``MANIFEST.sha256``. Each load checks them: a
damaged, missing or extra file is warned about and the set is drawn again
(drawing is deterministic, so the images and the dataset's fingerprint are the
same); a set drawn by an earlier version (no manifest) is drawn again quietly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from bench.cache_paths import cache_root
from bench.data.imageset import ImageSet
from bench.errors import UserError
from bench.hookspecs import hookimpl
from bench.specs import DatasetSpec

CLASSES = ("healthy", "leukemia")
VERSION = 1  # bump when the drawing changes so caches are redrawn
MANIFEST = "MANIFEST.sha256"
MAX_PER_CLASS = 20_000  # 40,000 drawn fields: a few GB of PNGs at the largest size

_BACKGROUND = np.array([236, 205, 212], dtype=np.float32)
_RBC = np.array([214, 120, 128], dtype=np.float32)
_RBC_PALLOR = np.array([232, 176, 180], dtype=np.float32)
_CYTOPLASM_HEALTHY = np.array([222, 196, 222], dtype=np.float32)
_CYTOPLASM_BLAST = np.array([170, 168, 215], dtype=np.float32)
_NUCLEUS_DENSE = np.array([88, 40, 120], dtype=np.float32)
_NUCLEUS_BLAST = np.array([120, 70, 160], dtype=np.float32)
_NUCLEOLUS = np.array([165, 130, 195], dtype=np.float32)


def _disc_alpha(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    """Soft-edged disc coverage in [0, 1] (1 px anti-aliased rim)."""
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return np.clip(r - d + 0.5, 0.0, 1.0)


def _blend(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray | np.ndarray) -> None:
    a = alpha[..., None]
    img *= 1.0 - a
    img += a * colour


def _draw_red_cells(img: np.ndarray, rng: np.random.Generator, size: int) -> None:
    n = int(rng.integers(size * size // 1400, size * size // 900))
    scale = size / 256.0
    for _ in range(n):
        r = rng.uniform(11, 15) * scale
        cy, cx = rng.uniform(-r, size + r, 2)
        y0, y1 = max(int(cy - r - 2), 0), min(int(cy + r + 3), size)
        x0, x1 = max(int(cx - r - 2), 0), min(int(cx + r + 3), size)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        patch = img[y0:y1, x0:x1]
        tint = _RBC + rng.normal(0, 6, 3).astype(np.float32)
        _blend(patch, 0.85 * _disc_alpha(yy, xx, cy, cx, r), tint)
        _blend(patch, 0.7 * _disc_alpha(yy, xx, cy, cx, r * 0.45), _RBC_PALLOR)


def _draw_white_cell(img: np.ndarray, rng: np.random.Generator, size: int, blast: bool) -> None:
    scale = size / 256.0
    r = rng.uniform(26, 34) * scale
    cy, cx = size / 2 + rng.uniform(-30, 30, 2) * scale
    # Work on the cell's bounding box only (the cell stays inside the field).
    y0, x0 = int(cy - r - 2), int(cx - r - 2)
    y1, x1 = int(cy + r + 3), int(cx + r + 3)
    full, img = img, img[y0:y1, x0:x1]
    cy, cx = cy - y0, cx - x0
    yy, xx = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float32)
    del full
    if blast:
        _blend(img, _disc_alpha(yy, xx, cy, cx, r), _CYTOPLASM_BLAST)
        rn = r * rng.uniform(0.78, 0.88)
        ny, nx = cy + rng.uniform(-2, 2) * scale, cx + rng.uniform(-2, 2) * scale
        texture = rng.normal(0, 1, yy.shape).astype(np.float32)
        nucleus = _NUCLEUS_BLAST[None, None, :] + 14.0 * texture[..., None]
        a = _disc_alpha(yy, xx, ny, nx, rn)[..., None]
        img *= 1.0 - a
        img += a * nucleus
        for _ in range(int(rng.integers(1, 4))):
            ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0, rn * 0.5)
            _blend(
                img,
                0.8
                * _disc_alpha(yy, xx, ny + rad * np.sin(ang), nx + rad * np.cos(ang), rn * 0.14),
                _NUCLEOLUS,
            )
    else:
        _blend(img, _disc_alpha(yy, xx, cy, cx, r), _CYTOPLASM_HEALTHY)
        if rng.random() < 0.5:  # lymphocyte-like: small dense round nucleus
            rn = r * rng.uniform(0.42, 0.55)
            _blend(img, _disc_alpha(yy, xx, cy, cx, rn), _NUCLEUS_DENSE)
        else:  # neutrophil-like: 3-5 dense lobes
            lobes = int(rng.integers(3, 6))
            phase = rng.uniform(0, 2 * np.pi)
            for k in range(lobes):
                ang = phase + 2 * np.pi * k / lobes
                ly, lx = cy + 0.42 * r * np.sin(ang), cx + 0.42 * r * np.cos(ang)
                _blend(img, _disc_alpha(yy, xx, ly, lx, r * 0.24), _NUCLEUS_DENSE)


def draw_field(rng: np.random.Generator, size: int, leukemia: bool) -> np.ndarray:
    """One synthetic smear field as a ``(size, size, 3)`` uint8 RGB array."""
    img = np.empty((size, size, 3), dtype=np.float32)
    img[:] = _BACKGROUND + rng.normal(0, 4, 3).astype(np.float32)
    _draw_red_cells(img, rng, size)
    _draw_white_cell(img, rng, size, blast=leukemia)
    img += rng.normal(0, 3.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _params_digest(n_per_class: int, size: int, seed: int) -> str:
    text = json.dumps({"v": VERSION, "n": n_per_class, "size": size, "seed": seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_all(target: Path, n_per_class: int, size: int, seed: int) -> None:
    """Draw every image into a temporary folder, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        for label, cls in enumerate(CLASSES):
            (tmp / cls).mkdir()
            for i in range(n_per_class):
                rng = np.random.default_rng([seed, label, i])
                arr = draw_field(rng, size, leukemia=label == 1)
                Image.fromarray(arr).save(tmp / cls / f"{i:04d}.png", compress_level=1)
        lines = [f"{_sha256(tmp / rel)}  {rel}" for rel in _names(n_per_class)]
        (tmp / MANIFEST).write_text("\n".join(lines) + "\n", encoding="ascii")
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race; its copy is identical
            if not target.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _names(n_per_class: int) -> list[str]:
    return [f"{cls}/{i:04d}.png" for cls in CLASSES for i in range(n_per_class)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def damage(root: Path, n_per_class: int) -> str | None:
    """Why the drawn set at ``root`` cannot be trusted ('' when it checks out, None: no manifest)."""
    if not (root / MANIFEST).exists():
        return None  # drawn by an earlier version
    try:
        lines = (root / MANIFEST).read_text(encoding="ascii").split("\n")
        listed = dict(reversed(line.split("  ", 1)) for line in lines if line)
    except (OSError, ValueError, UnicodeDecodeError):
        return f"no readable {MANIFEST}"
    if sorted(listed) != sorted(_names(n_per_class)):
        return f"{MANIFEST} lists other files"
    for rel, digest in listed.items():
        try:
            if _sha256(root / rel) != digest:
                return f"{rel} does not match its checksum"
        except OSError:
            return f"{rel} is missing or unreadable"
    return ""


def _redraw(root: Path, n_per_class: int, size: int, seed: int, reason: str | None) -> None:
    """Move a damaged set aside (atomically), draw it again, then delete the old copy."""
    if reason is not None:
        warnings.warn(
            f"synthetic dataset {root}: {reason}; drawing it again", UserWarning, stacklevel=3
        )
    aside = root.with_name(f".bad-{root.name}-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(FileNotFoundError):  # another process moved it first
        os.replace(root, aside)
    _write_all(root, n_per_class, size, seed)
    shutil.rmtree(aside, ignore_errors=True)


def synthetic_dataset(
    path: str | Path | None = None,
    n_per_class: int = 40,
    size: int = 256,
    seed: int = 0,
    **opts: object,
) -> ImageSet:
    """The synthetic two-class set (drawn once, cached as PNGs). ``path`` is ignored."""
    if opts:
        from bench.data.loaders import check_options

        check_options("synthetic", dict(opts), ("n_per_class", "size", "seed"))
    values = {"n_per_class": n_per_class, "size": size, "seed": seed}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise UserError(f"dataset 'synthetic': option {key} must be an integer, got {value!r}")
    n_per_class, size, seed = int(n_per_class), int(size), int(seed)
    if not 1 <= n_per_class <= MAX_PER_CLASS:
        raise UserError(
            f"dataset 'synthetic': option n_per_class must be in [1, {MAX_PER_CLASS:,}], "
            f"got {n_per_class}"
        )
    if not 0 <= seed < 2**32:
        raise UserError(f"dataset 'synthetic': option seed must be in [0, 2^32), got {seed}")
    if not 64 <= size <= 2048:
        raise UserError(f"dataset 'synthetic': option size must be in [64, 2048], got {size}")
    root = cache_root() / "synthetic" / _params_digest(n_per_class, size, seed)
    if not root.is_dir():
        _write_all(root, n_per_class, size, seed)
    elif (reason := damage(root, n_per_class)) != "":
        _redraw(root, n_per_class, size, seed, reason)
    paths, labels, groups = [], [], []
    for label, cls in enumerate(CLASSES):
        for i in range(n_per_class):
            p = root / cls / f"{i:04d}.png"
            paths.append(p)
            labels.append(label)
            groups.append(f"{cls}/{i:04d}.png")
    return ImageSet(
        name="synthetic",
        paths=tuple(paths),
        labels=np.asarray(labels, dtype=np.int64),
        classes=CLASSES,
        groups=tuple(groups),
        positive="leukemia",
        root=root,
        meta={"synthetic": True, "n_per_class": n_per_class, "size": size, "seed": seed},
    )


@hookimpl
def leukobench_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            name="synthetic",
            factory=synthetic_dataset,
            description="SYNTHETIC drawn blood-smear fields (healthy vs blast), for tests and the quickstart only",
            needs_path=False,
            options={
                "n_per_class": "images per class (default 40)",
                "size": "image side in pixels (default 256)",
                "seed": "drawing seed (default 0)",
            },
        )
    ]
