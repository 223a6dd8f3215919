"""Check every image before any heavy work: one clear line per bad file, nothing lost.

:func:`validate` hashes every file, fully decodes each new one (JPEGs through
PIL's ``draft`` DCT scaling, which still reads the whole entropy-coded stream
and so catches truncation cheaply), and caches the verdict by content digest
under ``cache_root()/validated/`` so a warm rerun only hashes files.

Rules: zero-byte, unreadable, non-image, truncated/corrupt and oversized
(decompression bomb) files are bad -> :class:`BadImagesError` unless
``skip_bad`` (then excluded and listed). Byte-identical duplicates within a
class are warned about and kept once; across classes they are a label
conflict (UserError naming both files). Fewer than two classes, or a class
with fewer images/groups than ``min_per_class``, is a UserError.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bench import strict_json
from bench.atomic import atomic_write_text
from bench.cache_paths import cache_root
from bench.data.decode import to_rgb
from bench.data.imageset import ImageSet
from bench.errors import BadImagesError, UserError
from bench.readable import utf8_bytes

CHECK_VERSION = 1  # bump when the checks change so cached verdicts are redone
DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own default limit
SKIP_HINT = "use --skip-bad to exclude them"


@dataclass
class ValidationReport:
    """What validation found. ``digests`` is aligned with the returned ImageSet."""

    digests: list[str]
    fingerprint: str
    excluded: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (dropped, kept)
    warnings: list[str] = field(default_factory=list)
    n_checked: int = 0
    n_decoded: int = 0  # files decoded this run (0 on a warm cache)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for result records (digests are left out: use the fingerprint)."""
        d = asdict(self)
        d.pop("digests")
        d["n_images"] = len(self.digests)
        d["excluded"] = [list(x) for x in self.excluded]
        d["duplicates"] = [list(x) for x in self.duplicates]
        return d


def fingerprint(relpaths: list[str], digests: list[str], label_names: list[str]) -> str:
    """SHA-256 over the sorted (relative path, content digest, label) triples."""
    h = hashlib.sha256()
    for rel, dig, lab in sorted(zip(relpaths, digests, label_names)):
        h.update(utf8_bytes(f"{rel}\t{dig}\t{lab}\n"))  # (undecodable name bytes kept as-is)
    return h.hexdigest()


def imageset_fingerprint(imageset: ImageSet, digests: list[str]) -> str:
    """:func:`fingerprint` of an ImageSet whose content digests are known."""
    return fingerprint(
        [imageset.relpath(i) for i in range(len(imageset))],
        digests,
        [imageset.classes[k] for k in imageset.labels],
    )


# -- one file --------------------------------------------------------------------------


UNCHECKED = "unchecked"  # cached verdict of an image too large to decode at the time


def _header_pixels(data: bytes) -> tuple[int, str | None]:
    """``(pixels, reason)`` from the header only (no decoding)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.width * im.height, None
    except Image.DecompressionBombError as exc:
        return -1, f"decompression bomb ({exc})"
    except UnidentifiedImageError:
        return 0, "not an image (unknown format)"
    except Exception as exc:  # noqa: BLE001 - any failure to parse the header is the file's fault
        return 0, f"unreadable image header ({type(exc).__name__}: {exc})"


def _decode_check(data: bytes) -> str | None:
    """Fully decode image bytes (JPEG via DCT scaling); the reason it is unusable, or None."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format == "JPEG":
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
            to_rgb(ImageOps.exif_transpose(im))
    except Exception as exc:  # noqa: BLE001 - any decode failure is the file's fault
        msg = str(exc)
        kind = "truncated" if "truncated" in msg.lower() else "corrupt"
        return f"{kind} image ({type(exc).__name__}: {msg})"
    return None


class _VerdictCache:
    """Digest -> (pixels, reason) index, one small JSON file, written atomically."""

    def __init__(self, root: Path | None = None) -> None:
        root = Path(root) if root is not None else cache_root()
        self.path = root / "validated" / f"verdicts-v{CHECK_VERSION}.json"
        self.lock = threading.Lock()
        self.new: dict[str, list[Any]] = {}
        self.known: dict[str, list[Any]] = self._read()

    def _read(self) -> dict[str, list[Any]]:
        """The stored verdicts; a damaged index is ignored (the files are checked again)."""
        try:
            known = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return known if isinstance(known, dict) else {}

    def get(self, digest: str) -> list[Any] | None:
        hit = self.known.get(digest)
        ok = (
            isinstance(hit, list)
            and len(hit) == 2
            and isinstance(hit[0], int)
            and (hit[1] is None or isinstance(hit[1], str))
        )
        return hit if ok else None

    def put(self, digest: str, pixels: int, reason: str | None) -> None:
        with self.lock:
            self.new[digest] = [pixels, reason]

    def save(self) -> None:
        if not self.new:
            return
        merged = self._read()  # merge with what another process may have written meanwhile
        merged.update(self.known)
        merged.update(self.new)
        atomic_write_text(self.path, strict_json.dumps(merged, separators=(",", ":")))


def _check_file(path: Path, max_pixels: int, cache: _VerdictCache) -> tuple[str, str | None, bool]:
    """``(digest, reason or None, decoded this run?)`` for one file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return "", f"unreadable file ({exc.strerror or exc})", False
    if not data:
        return hashlib.sha256(b"").hexdigest(), "zero-byte file", False
    digest = hashlib.sha256(data).hexdigest()
    hit = cache.get(digest)
    if hit is not None and not (hit[1] == UNCHECKED and 0 <= hit[0] <= max_pixels):
        pixels, reason = hit
        decoded = False
    else:
        pixels, reason = _header_pixels(data)
        decoded = False
        if reason is None and pixels <= max_pixels:
            reason = _decode_check(data)
            decoded = True
        elif reason is None:
            reason = UNCHECKED  # never decode a possible bomb just to check it
        cache.put(digest, pixels, reason)
    if reason == UNCHECKED or (reason is None and pixels > max_pixels):
        reason = f"decompression bomb ({pixels} pixels > max_pixels={max_pixels})"
    return digest, reason, decoded


# -- the whole set ---------------------------------------------------------------------


def validate(
    imageset: ImageSet,
    *,
    skip_bad: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_per_class: int | None = None,
    workers: int = 2,
    cache_dir: Path | None = None,
    min_classes: int = 2,
    needed_by: str = "",
) -> tuple[ImageSet, ValidationReport]:
    """Check every image of ``imageset``; return the usable set and a report.

    Verdicts are cached under ``cache_dir/validated/`` (default: :func:`cache_root`).
    ``min_classes``: classes that must keep usable images (1 for an external test set,
    which may lack some of the training classes). ``needed_by`` names what asks for
    ``min_per_class`` (``"s.toml: protocol[0].folds = 10"``) in the error.
    """
    n = len(imageset)
    rel = [imageset.relpath(i) for i in range(n)]
    cache = _VerdictCache(cache_dir)
    if workers > 1 and n > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda p: _check_file(p, max_pixels, cache), imageset.paths))
    else:
        results = [_check_file(p, max_pixels, cache) for p in imageset.paths]
    cache.save()

    bad = [(rel[i], r[1]) for i, r in enumerate(results) if r[1] is not None]
    if bad and not skip_bad:
        raise BadImagesError(
            [(str(imageset.paths[i]), r[1]) for i, r in enumerate(results) if r[1] is not None],
            hint=SKIP_HINT,
        )
    keep: list[int] = []
    duplicates: list[tuple[str, str]] = []
    first_by_digest: dict[str, int] = {}
    for i, (digest, reason, _) in enumerate(results):
        if reason is not None:
            continue
        j = first_by_digest.get(digest)
        if j is None:
            first_by_digest[digest] = i
            keep.append(i)
        elif imageset.labels[j] == imageset.labels[i]:
            duplicates.append((rel[i], rel[j]))
        else:
            raise UserError(
                f"label conflict: {imageset.paths[j]} ({imageset.classes[imageset.labels[j]]}) "
                f"and {imageset.paths[i]} ({imageset.classes[imageset.labels[i]]}) are "
                "byte-identical; remove one or fix its label"
            )

    warnings = []
    if bad:
        warnings.append(f"excluded {len(bad)} bad image(s) (--skip-bad)")
    if duplicates:
        warnings.append(
            f"{len(duplicates)} byte-identical duplicate(s) within a class kept once: "
            + ", ".join(f"{d} = {k}" for d, k in duplicates[:5])
            + (" ..." if len(duplicates) > 5 else "")
        )
    out = imageset.subset(np.asarray(keep, dtype=np.int64))
    _check_classes(out, min_per_class, min_classes, needed_by)
    digests = [results[i][0] for i in keep]
    fp = imageset_fingerprint(out, digests)
    out = out.subset(np.arange(len(out)), fingerprint=fp)
    report = ValidationReport(
        digests=digests,
        fingerprint=fp,
        excluded=bad,
        duplicates=duplicates,
        warnings=warnings,
        n_checked=n,
        n_decoded=sum(1 for r in results if r[2]),
    )
    return out, report


def _check_classes(
    imageset: ImageSet, min_per_class: int | None, min_classes: int = 2, needed_by: str = ""
) -> None:
    counts = imageset.class_counts()
    present = [c for c, k in counts.items() if k > 0]
    if len(present) < min_classes:
        raise UserError(
            f"dataset {imageset.name!r} has {len(present)} class(es) with usable images "
            f"({', '.join(present) or 'none'}); at least {min_classes} are needed"
        )
    if min_per_class is None:
        return
    groups = np.asarray(imageset.groups, dtype=object)
    for k, cls in enumerate(imageset.classes):
        n_img = counts[cls]
        n_grp = len(set(groups[imageset.labels == k]))
        if n_img < min_per_class or n_grp < min_per_class:
            raise UserError(
                (f"{needed_by}: " if needed_by else "")
                + f"class {cls!r} has {n_img} image(s) in {n_grp} group(s); at least "
                f"{min_per_class} of each are needed (e.g. one per fold): add images or use "
                "fewer folds"
            )
