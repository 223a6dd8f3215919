"""Content-addressed on-disk cache of feature vectors.

A key is the SHA-256 of the cache-format version, :meth:`Backbone.cache_identity`,
the transform key, the mask key and the image's content digest, so renaming
or moving images keeps their features and any change of weights, layer or
preprocessing misses.

Storage: each :meth:`FeatureCache.put_many` call (one batch of one backbone)
writes one *pack*, ``<root>/features/packs/<id>.lbp``: ``PACK_MAGIC``, header
length (uint32 LE), the header's CRC-32 (uint32 LE), a JSON header
(``backbone`` and, per entry, key, offset, size, CRC-32, dtype, shape) and the
raw little-endian payloads. Packs of earlier versions (``LBP1``: no header
CRC) are still read; their entries' dtype, shape and offsets are checked. One file per
batch instead of one per vector: on the CI machine's ext4 disk a per-vector
file cost 0.2-0.5 ms of CPU (create, rename, directory and writeback work), a
pack ~0.02 ms per vector, and a big run no longer leaves hundreds of thousands
of small files (inode quotas on cluster file systems). Entries written by
earlier versions, one file per key under ``<root>/features/<key[:2]>/<key>.f``,
are still read, counted and cleared.

Safety:

* interruption: a pack is written to a temporary file and renamed into place
  (``os.replace`` is atomic), so a batch is either complete or absent;
  callers write batch by batch, so a rerun resumes.
* concurrency: packs have unique names, so two runs never write the same
  file; a key present in two packs holds identical bytes.
* corruption: each entry carries a CRC-32 of its payload and its shape; a bad
  entry is reported with a :class:`CacheCorruptionWarning`, removed (its pack
  is rewritten without it) and treated as missing, so it is recomputed. A pack
  whose header fails its CRC, cannot be read, or describes an entry that is
  not a little-endian float array inside the file is reported and deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import threading
import time
import uuid
import warnings
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bench.atomic import ensure_dir, write_failure
from bench.data.loaders import cache_root

FORMAT_VERSION = 1
MAGIC = b"LBF1"  # one-entry files of earlier versions (read, not written)
SUFFIX = ".f"
PACK_MAGIC = b"LBP2"  # header CRC-32 after the header length
PACK_MAGIC_V1 = b"LBP1"  # packs of earlier versions: no header CRC (read, not written)
PACK_SUFFIX = ".lbp"
_STALE_TMP_SECONDS = 3600


class CacheCorruptionWarning(UserWarning):
    """A cache entry failed its checksum and will be recomputed."""


def feature_key(
    backbone_identity: str, transform_key: str, mask_key: str, image_digest: str
) -> str:
    """The content address of one feature vector (hex SHA-256)."""
    text = f"leukobench-features-v{FORMAT_VERSION}|{backbone_identity}|{transform_key}|{mask_key}|{image_digest}"
    return hashlib.sha256(text.encode()).hexdigest()


def _decode(blob: bytes) -> tuple[dict[str, Any], np.ndarray]:
    """Header and array of an entry; ValueError when anything does not check out."""
    if len(blob) < 8 or blob[:4] != MAGIC:
        raise ValueError("bad magic")
    (hlen,) = struct.unpack("<I", blob[4:8])
    header = json.loads(blob[8 : 8 + hlen])
    payload = blob[8 + hlen :]
    if zlib.crc32(payload) != header["crc32"]:
        raise ValueError("checksum mismatch")
    dtype = entry_dtype(header["dtype"])
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


class _Slot(NamedTuple):
    """Where one entry lives inside a pack."""

    pack: Path
    offset: int
    nbytes: int
    crc32: int
    dtype: str
    shape: tuple[int, ...]


def _pack_parts(items: Mapping[str, np.ndarray], backbone: str) -> list[Any]:
    """A pack as buffers to write in order: magic, header length, header, payloads (no copies)."""
    entries, payloads, at = [], [], 0
    for key, array in items.items():
        arr = np.ascontiguousarray(array)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        payload = memoryview(arr).cast("B")
        entries.append([key, at, len(payload), zlib.crc32(payload), arr.dtype.str, list(arr.shape)])
        payloads.append(payload)
        at += len(payload)
    header = json.dumps({"backbone": backbone, "entries": entries}, separators=(",", ":")).encode()
    return [PACK_MAGIC + struct.pack("<II", len(header), zlib.crc32(header)) + header, *payloads]


def _write_all(fd: int, parts: list[Any]) -> None:
    """Write ``parts`` to ``fd`` in order: gathered writes, finishing any short write."""
    for i in range(0, len(parts), 512):  # (the iovec limit is 1,024)
        chunk = parts[i : i + 512]
        done = os.writev(fd, chunk)
        for part in chunk:
            size = len(part)
            if done >= size:
                done -= size
                continue
            view = memoryview(part)[done:]
            while view:
                view = view[os.write(fd, view) :]
            done = 0


def _read_pack_header(path: Path) -> tuple[dict[str, Any], int]:
    """A pack's header and where its payloads start; ValueError/OSError when unreadable."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8 or head[:4] not in (PACK_MAGIC, PACK_MAGIC_V1):
            raise ValueError("bad magic")
        (hlen,) = struct.unpack("<I", head[4:8])
        crc = None
        if head[:4] == PACK_MAGIC:
            raw_crc = f.read(4)
            if len(raw_crc) != 4:
                raise ValueError("truncated header")
            (crc,) = struct.unpack("<I", raw_crc)
        if hlen > size:
            raise ValueError("header longer than the file")
        raw = f.read(hlen)
    if len(raw) != hlen:
        raise ValueError("truncated header")
    if crc is not None and zlib.crc32(raw) != crc:
        raise ValueError("header checksum mismatch")
    header = json.loads(raw)
    if not isinstance(header, dict) or not isinstance(header.get("entries"), list):
        raise ValueError("malformed header")
    return header, 8 + (4 if crc is not None else 0) + hlen


def entry_dtype(text: str) -> np.dtype:
    """The dtype of a stored entry: a little-endian (or 1-byte) float; ValueError otherwise."""
    dtype = np.dtype(text)
    little = dtype.byteorder in ("<", "|") or (dtype.byteorder == "=" and np.little_endian)
    if dtype.kind != "f" or not little:
        raise ValueError(f"entry dtype {text!r} is not a little-endian float")
    return dtype


def _slot(path: Path, start: int, entry: Any) -> tuple[str, _Slot]:
    """One header entry as ``(key, slot)``, checked; ValueError when bad."""
    key, offset, nbytes, crc, dtype, shape = entry
    slot = _Slot(path, start + int(offset), int(nbytes), int(crc), str(dtype),
                 tuple(int(d) for d in shape))  # fmt: skip
    count = int(np.prod(slot.shape, dtype=np.int64))
    if min(slot.shape, default=0) < 0 or entry_dtype(slot.dtype).itemsize * count != slot.nbytes:
        raise ValueError(f"entry {key}: shape {list(slot.shape)} does not match its size")
    if int(offset) < 0:  # (one past the end is a truncated entry: cut out when read)
        raise ValueError(f"entry {key}: negative offset")
    return str(key), slot


def _read_pack(path: Path) -> tuple[str, list[tuple[str, _Slot]]]:
    """A pack's backbone and ``(key, slot)`` per entry; ValueError/OSError/... when unreadable."""
    header, start = _read_pack_header(path)
    slots = [_slot(path, start, e) for e in header["entries"]]
    return str(header.get("backbone", "")), slots


class FeatureCache:
    """Feature vectors on disk, addressed by :func:`feature_key`."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else cache_root()
        self.dir = self.root / "features"
        self.packs = self.dir / "packs"
        self.corrupt: list[str] = []  # keys found corrupt (and removed) by this object
        self.unreadable: dict[Path, str] = {}  # packs info() could not read (left in place)
        self._index: dict[str, list[_Slot]] = {}  # key -> its copies, in discovery order
        self._seen: dict[Path, tuple[str, list[str]]] = {}  # pack -> (backbone, keys)
        self._lock = threading.Lock()
        self._swept = False

    # -- index of packs ------------------------------------------------------
    def _refresh(self, repair: bool = True) -> None:
        """Index packs written since the last look (by this or any other process).

        An unreadable pack is reported and deleted (its entries get recomputed);
        with ``repair=False`` (``cache info``) it is only listed in ``unreadable``.
        """
        try:
            names = [
                e.name
                for e in os.scandir(self.packs)
                if e.name.endswith(PACK_SUFFIX) and e.is_file()  # not a stray folder
            ]
        except FileNotFoundError:
            names = []
        present = {self.packs / n for n in names}
        with self._lock:
            for gone in set(self._seen) - present:  # cleared by someone else
                self._forget(gone)
            new = sorted(present - set(self._seen))
        for path in new:
            try:
                backbone, slots = _read_pack(path)
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError, IndexError, OverflowError) as exc:
                if not repair:
                    self.unreadable[path] = str(exc)
                    continue
                self._warn(f"feature cache pack {path} is unreadable ({exc}); its entries "
                           "will be recomputed")  # fmt: skip
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            with self._lock:
                self._seen[path] = (backbone, [k for k, _ in slots])
                for key, slot in slots:
                    self._index.setdefault(key, []).append(slot)

    def _forget(self, pack: Path) -> None:
        """Drop ``pack`` from the index (caller holds the lock); other copies stay."""
        _, keys = self._seen.pop(pack, ("", []))
        for key in keys:
            copies = [s for s in self._index.get(key, []) if s.pack != pack]
            if copies:
                self._index[key] = copies
            else:
                self._index.pop(key, None)

    def _path(self, key: str) -> Path:
        """Where an earlier version stored ``key`` (one file per entry)."""
        return self.dir / key[:2] / f"{key}{SUFFIX}"

    def _warn(self, message: str) -> None:
        warnings.warn(message, CacheCorruptionWarning, stacklevel=4)

    # -- public API ----------------------------------------------------------
    def count(self, keys: Iterable[str]) -> int:
        """How many of ``keys`` have an entry (without reading or checking them)."""
        self._refresh()
        return sum(1 for key in set(keys) if key in self._index or self._path(key).exists())

    def get_many(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys`` (missing or corrupt keys are left out)."""
        self._refresh()
        found: dict[str, np.ndarray] = {}
        by_pack: dict[Path, list[tuple[str, _Slot]]] = {}
        legacy: list[str] = []
        for key in keys:
            copies = self._index.get(key)
            if not copies:
                legacy.append(key)
            else:
                by_pack.setdefault(copies[0].pack, []).append((key, copies[0]))
        for pack, wanted in by_pack.items():
            bad: list[tuple[str, str]] = []
            try:
                with open(pack, "rb") as f:
                    for key, slot in wanted:
                        f.seek(slot.offset)
                        payload = f.read(slot.nbytes)
                        reason = self._check(payload, slot)
                        if reason:
                            bad.append((key, reason))
                            continue
                        found[key] = np.frombuffer(payload, dtype=slot.dtype).reshape(slot.shape)
            except FileNotFoundError:  # removed meanwhile (clear, or a repair elsewhere)
                with self._lock:
                    self._forget(pack)
                continue
            except OSError:
                continue
            if bad:
                self._drop_from_pack(pack, bad)
        for key in legacy:
            path = self._path(key)
            try:
                with open(path, "rb") as f:
                    blob = f.read()
            except OSError:
                continue
            try:
                _, arr = _decode(blob)
            except (ValueError, KeyError, TypeError) as exc:
                self._drop_corrupt(key, path, str(exc))
                continue
            found[key] = arr
        return found

    @staticmethod
    def _check(payload: bytes, slot: _Slot) -> str:
        """Why ``payload`` is not the entry ``slot`` describes ('' when it is).

        The slot's dtype and shape were checked against its size when the pack's
        header was read (:func:`_slot`).
        """
        if len(payload) != slot.nbytes:
            return "truncated"
        if zlib.crc32(payload) != slot.crc32:
            return "checksum mismatch"
        return ""

    def _drop_from_pack(self, pack: Path, bad: list[tuple[str, str]]) -> None:
        """Report ``bad`` entries and rewrite ``pack`` without them (atomically)."""
        for key, reason in bad:
            self.corrupt.append(key)
            self._warn(f"feature cache entry {key} in {pack} is corrupt ({reason}); "
                       "it will be recomputed")  # fmt: skip
        dropped = {k for k, _ in bad}
        keep: dict[str, np.ndarray] = {}
        backbone = ""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, IndexError):
            backbone, slots = _read_pack(pack)
            with open(pack, "rb") as f:
                for key, slot in slots:
                    if key in dropped:
                        continue
                    f.seek(slot.offset)
                    payload = f.read(slot.nbytes)
                    if not self._check(payload, slot):
                        keep[key] = np.frombuffer(payload, dtype=slot.dtype).reshape(slot.shape)
        if keep:
            self._write_pack(keep, backbone)
        with contextlib.suppress(OSError):
            pack.unlink()
        with self._lock:
            self._forget(pack)
        self._refresh()

    def _drop_corrupt(self, key: str, path: Path, reason: str) -> None:
        self.corrupt.append(key)
        self._warn(f"feature cache entry {path} is corrupt ({reason}); it will be recomputed")
        with contextlib.suppress(OSError):
            path.unlink()

    def put_many(self, items: Mapping[str, np.ndarray], backbone: str = "") -> None:
        """Store ``key -> vector`` as one pack, atomically (all of them or none)."""
        if items:
            self._write_pack(items, backbone)

    def _write_pack(self, items: Mapping[str, np.ndarray], backbone: str) -> Path:
        if not self._swept:  # once per cache object: temp files of writes that died
            self._swept = True
            self._sweep_stale_tmp()
        ensure_dir(self.packs)
        name = uuid.uuid4().hex
        tmp = self.packs / f".tmp-{name}"
        path = self.packs / f"{name}{PACK_SUFFIX}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                _write_all(fd, _pack_parts(items, backbone))
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):  # disk full, read-only cache: one clear line
                raise write_failure(path, exc) from None
            raise
        return path

    def _entries(self) -> Iterable[Path]:
        """Entry files of earlier versions (one per key)."""
        if not self.dir.is_dir():
            return
        for sub in self.dir.iterdir():
            if sub.is_dir() and sub.name != "packs":
                yield from sub.glob(f"*{SUFFIX}")

    def info(self) -> dict[str, Any]:
        """``{"root", "entries", "bytes", "packs", "unreadable", "backbones": {name: {...}}}``.

        Entries are distinct keys; bytes are what the files take on disk. Read
        only: an unreadable pack is counted in ``unreadable``, not deleted.
        """
        self._refresh(repair=False)
        per: dict[str, dict[str, int]] = {}
        keys: set[str] = set()
        size = 0
        with self._lock:
            seen = dict(self._seen)
        for pack, (backbone, pack_keys) in seen.items():
            try:
                nbytes = pack.stat().st_size
            except OSError:
                continue
            slot = per.setdefault(backbone or "?", {"entries": 0, "bytes": 0})
            fresh = [k for k in pack_keys if k not in keys]
            keys.update(fresh)
            slot["entries"] += len(fresh)
            slot["bytes"] += nbytes
            size += nbytes
        for path in self._entries():
            key = path.name[: -len(SUFFIX)]
            if key in keys:
                continue
            header = _read_header(path)
            name = (header or {}).get("backbone") or ("<corrupt>" if header is None else "?")
            try:
                nbytes = path.stat().st_size
            except OSError:
                continue
            slot = per.setdefault(name, {"entries": 0, "bytes": 0})
            slot["entries"] += 1
            slot["bytes"] += nbytes
            keys.add(key)
            size += nbytes
        return {
            "root": str(self.dir),
            "entries": len(keys),
            "bytes": size,
            "packs": len(seen),
            "unreadable": len(self.unreadable),
            "backbones": per,
        }

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
        """Delete every entry (or only ``backbone``'s); returns how many keys were removed."""
        self._refresh()
        if backbone is None:
            n = self.info()["entries"]
            if self.dir.is_dir():
                shutil.rmtree(self.dir, ignore_errors=True)
            with self._lock:
                self._seen.clear()
                self._index.clear()
            return n
        removed: set[str] = set()
        with self._lock:
            mine = [p for p, (b, _) in self._seen.items() if b == backbone]
        for pack in mine:
            try:
                pack.unlink()
            except OSError:
                continue
            with self._lock:
                removed.update(self._seen[pack][1])
                self._forget(pack)
        for path in list(self._entries()):
            header = _read_header(path)
            if header is not None and header.get("backbone") == backbone:
                try:
                    path.unlink()
                    removed.add(path.name[: -len(SUFFIX)])
                except OSError:
                    pass
        return len(removed)
