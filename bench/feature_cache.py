"""Content-addressed on-disk cache of feature vectors.

One small file per (backbone, preprocessing, transform, mask, image content)
key, under ``<root>/features/<key[:2]>/<key>.f``. A key is the SHA-256 of the
cache-format version, :meth:`Backbone.cache_identity`, the transform key, the
mask key and the image's content digest, so renaming or moving images keeps
their features and any change of weights, layer or preprocessing misses.

Safety:

* interruption: every entry is written to a temporary file in the same
  folder and renamed into place (``os.replace`` is atomic), so an entry is
  either complete or absent; callers write batch by batch, so a rerun resumes.
* concurrency: two runs writing the same key write identical bytes; the last
  rename wins and readers see one whole file or the other.
* corruption: each entry carries a CRC-32 of its payload and its shape; a bad
  entry is deleted, reported with a :class:`CacheCorruptionWarning` and
  treated as missing (so it is recomputed).

Entry layout: ``MAGIC`` (4 bytes), header length (uint32 LE), JSON header
(``backbone``, ``dtype``, ``shape``, ``crc32``), raw little-endian payload.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
import warnings
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.loaders import cache_root

FORMAT_VERSION = 1
MAGIC = b"LBF1"
SUFFIX = ".f"
_STALE_TMP_SECONDS = 3600


class CacheCorruptionWarning(UserWarning):
    """A cache entry failed its checksum and will be recomputed."""


def feature_key(
    backbone_identity: str, transform_key: str, mask_key: str, image_digest: str
) -> str:
    """The content address of one feature vector (hex SHA-256)."""
    text = f"leukobench-features-v{FORMAT_VERSION}|{backbone_identity}|{transform_key}|{mask_key}|{image_digest}"
    return hashlib.sha256(text.encode()).hexdigest()


def _encode(array: np.ndarray, backbone: str) -> bytes:
    arr = np.ascontiguousarray(array)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    payload = arr.tobytes()
    header = json.dumps(
        {
            "backbone": backbone,
            "dtype": arr.dtype.str,
            "shape": list(arr.shape),
            "crc32": zlib.crc32(payload),
        },
        separators=(",", ":"),
    ).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + payload


def _decode(blob: bytes) -> tuple[dict[str, Any], np.ndarray]:
    """Header and array of an entry; ValueError when anything does not check out."""
    if len(blob) < 8 or blob[:4] != MAGIC:
        raise ValueError("bad magic")
    (hlen,) = struct.unpack("<I", blob[4:8])
    header = json.loads(blob[8 : 8 + hlen])
    payload = blob[8 + hlen :]
    if zlib.crc32(payload) != header["crc32"]:
        raise ValueError("checksum mismatch")
    dtype = np.dtype(header["dtype"])
    shape = tuple(header["shape"])
    if len(payload) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise ValueError("size mismatch")
    return header, np.frombuffer(payload, dtype=dtype).reshape(shape)


def _read_header(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if head[:4] != MAGIC:
                return None
            (hlen,) = struct.unpack("<I", head[4:8])
            return json.loads(f.read(hlen))
    except (OSError, ValueError, struct.error):
        return None


class FeatureCache:
    """Feature vectors on disk, addressed by :func:`feature_key`."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else cache_root()
        self.dir = self.root / "features"
        self.corrupt: list[str] = []  # keys found corrupt (and removed) by this object

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}{SUFFIX}"

    def count(self, keys: Iterable[str]) -> int:
        """How many of ``keys`` have an entry (without reading or checking them)."""
        return sum(1 for key in set(keys) if self._path(key).exists())

    def get_many(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys`` (missing or corrupt keys are left out)."""
        found: dict[str, np.ndarray] = {}
        for key in keys:
            path = self._path(key)
            try:
                with open(path, "rb") as f:
                    blob = f.read()
            except FileNotFoundError:
                continue
            except OSError:
                continue
            try:
                _, arr = _decode(blob)
            except (ValueError, KeyError, TypeError) as exc:
                self._drop_corrupt(key, path, str(exc))
                continue
            found[key] = arr
        return found

    def _drop_corrupt(self, key: str, path: Path, reason: str) -> None:
        self.corrupt.append(key)
        warnings.warn(
            f"feature cache entry {path} is corrupt ({reason}); it will be recomputed",
            CacheCorruptionWarning,
            stacklevel=3,
        )
        with contextlib.suppress(OSError):
            path.unlink()

    def put_many(self, items: Mapping[str, np.ndarray], backbone: str = "") -> None:
        """Store ``key -> vector`` atomically, one entry at a time."""
        made: set[Path] = set()
        for key, array in items.items():
            path = self._path(key)
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(_encode(array, backbone))
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

    def _entries(self) -> Iterable[Path]:
        if not self.dir.is_dir():
            return
        for sub in self.dir.iterdir():
            if sub.is_dir():
                yield from sub.glob(f"*{SUFFIX}")

    def info(self) -> dict[str, Any]:
        """``{"root", "entries", "bytes", "backbones": {name: {"entries", "bytes"}}}``."""
        per: dict[str, dict[str, int]] = {}
        total = size = 0
        for path in self._entries():
            header = _read_header(path)
            name = (header or {}).get("backbone") or ("<corrupt>" if header is None else "?")
            try:
                nbytes = path.stat().st_size
            except OSError:
                continue
            slot = per.setdefault(name, {"entries": 0, "bytes": 0})
            slot["entries"] += 1
            slot["bytes"] += nbytes
            total += 1
            size += nbytes
        self._sweep_stale_tmp()
        return {"root": str(self.dir), "entries": total, "bytes": size, "backbones": per}

    def _sweep_stale_tmp(self) -> None:
        if not self.dir.is_dir():
            return
        cutoff = time.time() - _STALE_TMP_SECONDS
        for tmp in self.dir.glob("*/.tmp-*"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
            except OSError:
                pass

    def clear(self, backbone: str | None = None) -> int:
        """Delete every entry (or only ``backbone``'s); returns how many were removed."""
        if backbone is None:
            n = sum(1 for _ in self._entries())
            if self.dir.is_dir():
                shutil.rmtree(self.dir, ignore_errors=True)
            return n
        n = 0
        for path in list(self._entries()):
            header = _read_header(path)
            if header is not None and header.get("backbone") == backbone:
                try:
                    path.unlink()
                    n += 1
                except OSError:
                    pass
        return n
