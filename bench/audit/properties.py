"""Acquisition properties of every image file, cached by content digest.

One pass per file reads its bytes once and records what the *acquisition* left in
it -- size, format, JPEG quantisation and chroma subsampling, EXIF camera and
software, per-channel colour statistics, blank borders -- plus two perceptual
hashes (``imagehash`` pHash and dHash) for near-duplicate search. Nothing here
depends on the file's name or label, so results are cached per SHA-256 digest
under ``cache_root()/audit/`` and a second audit only hashes the files.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin

from bench.atomic import atomic_write_text
from bench.cache_paths import cache_root
from bench.data.decode import to_rgb
from bench.data.imageset import ImageSet
from bench.errors import BadImagesError

PROPERTIES_VERSION = 2  # bump when a property changes, so cached values are redone
SKIP_HINT = "use --skip-bad to exclude them"
HASH_SIZE = 8  # 8x8 = 64-bit perceptual hashes
BORDER_STD = 4.0  # a border row/column is "blank" when its pixel std is below this (0-255)
STATS_SIDE = 128  # colour statistics and hashes are taken on a <= ~2x this decode (JPEG draft)

# The IJG standard luminance table (natural order), for JPEG quality estimates.
_STD_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
     92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.float64,
)  # fmt: skip
_SAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}
_EXIF_TAGS = {"make": 0x010F, "model": 0x0110, "software": 0x0131}


def _ijg_table(quality: int) -> np.ndarray:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((_STD_LUMA * scale + 50) / 100), 1, 255)


_IJG_SUMS = np.array([_ijg_table(q).sum() for q in range(1, 101)])


def jpeg_quality(luma: list[int] | None) -> int | None:
    """IJG quality (1-100) whose luminance table is closest to ``luma`` (by table sum)."""
    if not luma or len(luma) != 64:
        return None
    return int(np.argmin(np.abs(_IJG_SUMS - float(np.sum(luma))))) + 1


def _border_fractions(grey: np.ndarray) -> dict[str, float]:
    """Fraction of the height/width that is blank (near-constant rows/columns) on each side."""
    h, w = grey.shape
    row_blank = grey.std(axis=1) < BORDER_STD
    col_blank = grey.std(axis=0) < BORDER_STD

    def run(flags: np.ndarray) -> int:
        idx = np.flatnonzero(~flags)
        return len(flags) if idx.size == 0 else int(idx[0])

    return {
        "border_top": run(row_blank) / h,
        "border_bottom": run(row_blank[::-1]) / h,
        "border_left": run(col_blank) / w,
        "border_right": run(col_blank[::-1]) / w,
    }


def content_box(rgb: Image.Image, borders: dict[str, float], min_side: int = 16) -> Image.Image:
    """``rgb`` without its blank borders (hashes then compare content, not black padding:
    segmented cells on black would otherwise all look alike); unchanged when too little is left."""
    w, h = rgb.size
    left, right = round(borders["border_left"] * w), round(borders["border_right"] * w)
    top, bottom = round(borders["border_top"] * h), round(borders["border_bottom"] * h)
    if w - left - right < min_side or h - top - bottom < min_side:
        return rgb
    if not (left or right or top or bottom):
        return rgb
    return rgb.crop((left, top, w - right, h - bottom))


def _hash_hex(bits: np.ndarray) -> str:
    return np.packbits(bits.astype(bool).ravel()).tobytes().hex()


def file_properties(data: bytes) -> dict[str, Any]:
    """Every acquisition property of one image file's bytes (raises on an unusable image)."""
    import imagehash

    props: dict[str, Any] = {"file_size": len(data)}
    with Image.open(io.BytesIO(data)) as im:
        props.update(
            format=im.format or "unknown",
            width=int(im.width),
            height=int(im.height),
            mode=im.mode,
            progressive=bool(im.info.get("progressive") or im.info.get("progression")),
            icc_profile=bool(im.info.get("icc_profile")),
            dpi=float(im.info["dpi"][0]) if isinstance(im.info.get("dpi"), tuple) else None,
        )
        exif = im.getexif()
        props["has_exif"] = len(exif) > 0
        for name, tag in _EXIF_TAGS.items():
            value = exif.get(tag)
            props[f"exif_{name}"] = str(value).strip("\x00 ").strip() if value else None
        props["orientation"] = int(exif.get(0x0112, 1) or 1)
        if im.format == "JPEG":
            tables = getattr(im, "quantization", None) or {}
            luma = list(tables.get(0, [])) or None
            props["jpeg_quality"] = jpeg_quality(luma)
            props["jpeg_tables"] = hashlib.sha256(
                json.dumps({str(k): list(v) for k, v in sorted(tables.items())}).encode()
            ).hexdigest()[:12]
            props["jpeg_subsampling"] = _SAMPLING.get(JpegImagePlugin.get_sampling(im), "other")
            im.draft("RGB", (STATS_SIDE, STATS_SIDE))
        else:
            props["jpeg_quality"] = props["jpeg_tables"] = props["jpeg_subsampling"] = None
        im.load()
        rgb = to_rgb(ImageOps.exif_transpose(im))
    if max(rgb.size) > 2 * STATS_SIDE:
        rgb.thumbnail((2 * STATS_SIDE, 2 * STATS_SIDE), Image.Resampling.BILINEAR)
    arr = np.asarray(rgb, dtype=np.float64)
    for c, name in enumerate("rgb"):
        props[f"mean_{name}"] = float(arr[..., c].mean())
        props[f"std_{name}"] = float(arr[..., c].std())
    borders = _border_fractions(arr.mean(axis=2))
    props.update(borders)
    content = content_box(rgb, borders)
    props["phash"] = _hash_hex(imagehash.phash(content, hash_size=HASH_SIZE).hash)
    props["dhash"] = _hash_hex(imagehash.dhash(content, hash_size=HASH_SIZE).hash)
    return props


class PropertyCache:
    """Digest -> properties, one JSON file under ``cache_root()/audit/``, written atomically."""

    def __init__(self, root: Path | None = None) -> None:
        base = Path(root) if root is not None else cache_root()
        self.path = base / "audit" / f"properties-v{PROPERTIES_VERSION}.json"
        self.lock = threading.Lock()
        self.new: dict[str, dict[str, Any]] = {}
        try:
            self.known: dict[str, dict[str, Any]] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.known = {}

    def get(self, digest: str) -> dict[str, Any] | None:
        return self.known.get(digest) or self.new.get(digest)

    def put(self, digest: str, props: dict[str, Any]) -> None:
        with self.lock:
            self.new[digest] = props

    def save(self) -> None:
        if not self.new:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:  # merge with what another process may have written meanwhile
            merged = json.loads(self.path.read_text())
        except (OSError, ValueError):
            merged = {}
        merged.update(self.known)
        merged.update(self.new)
        atomic_write_text(self.path, json.dumps(merged, separators=(",", ":")))


@dataclass
class PropertyTable:
    """Properties aligned with an ImageSet (bad files already removed)."""

    imageset: ImageSet
    digests: list[str]
    rows: list[dict[str, Any]]
    excluded: list[tuple[str, str]] = field(default_factory=list)
    n_computed: int = 0

    def column(self, name: str) -> list[Any]:
        """One property for every image."""
        return [r.get(name) for r in self.rows]


def _one(path: Path, cache: PropertyCache) -> tuple[str, dict[str, Any] | None, str | None, bool]:
    """``(digest, properties, reason it is bad, computed now?)`` for one file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return "", None, f"unreadable file ({exc.strerror or exc})", False
    if not data:
        return hashlib.sha256(b"").hexdigest(), None, "zero-byte file", False
    digest = hashlib.sha256(data).hexdigest()
    hit = cache.get(digest)
    if hit is not None:
        return digest, hit, None, False
    try:
        props = file_properties(data)
    except Image.DecompressionBombError as exc:
        return digest, None, f"decompression bomb ({exc})", False
    except Exception as exc:  # noqa: BLE001 - any failure to decode is the file's fault
        msg = str(exc)
        kind = "truncated" if "truncated" in msg.lower() else "unreadable or corrupt"
        return digest, None, f"{kind} image ({type(exc).__name__}: {msg})", False
    cache.put(digest, props)
    return digest, props, None, True


def acquisition_properties(
    imageset: ImageSet, *, skip_bad: bool = False, workers: int = 2, cache_dir: Path | None = None
) -> PropertyTable:
    """Properties of every image; bad files raise :class:`BadImagesError` unless ``skip_bad``."""
    cache = PropertyCache(cache_dir)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(lambda p: _one(p, cache), imageset.paths))
    cache.save()
    bad = [(str(imageset.paths[i]), r[2]) for i, r in enumerate(results) if r[2] is not None]
    if bad and not skip_bad:
        raise BadImagesError(bad, hint=SKIP_HINT)
    keep = [i for i, r in enumerate(results) if r[2] is None]
    return PropertyTable(
        imageset=imageset.subset(np.asarray(keep, dtype=np.int64)),
        digests=[results[i][0] for i in keep],
        rows=[results[i][1] for i in keep],
        excluded=[(imageset.relpath(i), r[2]) for i, r in enumerate(results) if r[2] is not None],
        n_computed=sum(1 for r in results if r[3]),
    )
