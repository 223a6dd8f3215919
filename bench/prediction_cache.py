"""Cached Model 1 predictions: the same features, labels, folds and classifier give the same
predictions, so a rerun refits nothing.

Keyed by a digest of the feature matrix, labels, folds, classifier name and
options, the positive class and the versions of the code that fits it. Entries
are ``.npz`` files written atomically, each with a SHA-256 of its arrays
(``sha256``). An entry that is truncated, not a zip file, or whose arrays do
not match their checksum is reported once with a
:class:`~bench.feature_cache.CacheCorruptionWarning`, deleted and refitted, as
feature packs are. Entries written before checksums existed are still read
(the zip format's own CRC-32 still catches flipped bits in them).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import warnings
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from bench.atomic import atomic_write_bytes
from bench.cache_paths import cache_root
from bench.crossval import FoldPrediction
from bench.feature_cache import CacheCorruptionWarning

FORMAT_VERSION = 1
_PACKAGES = ("leukobench", "scikit-learn", "xgboost", "numpy")


def _versions() -> str:
    out = []
    for name in _PACKAGES:
        try:
            out.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            out.append(f"{name}=?")
    return ",".join(out)


def data_digest(
    X: np.ndarray, y: np.ndarray, folds: Sequence[tuple[np.ndarray, np.ndarray]]
) -> str:
    """Digest of what every classifier of a protocol sees (features, labels, folds)."""
    h = hashlib.sha256()
    for arr in (np.ascontiguousarray(X), np.asarray(y)):
        h.update(str((arr.dtype, arr.shape)).encode())
        h.update(arr.tobytes())
    for train, test in folds:
        h.update(np.asarray(train, dtype=np.int64).tobytes())
        h.update(b"|")
        h.update(np.asarray(test, dtype=np.int64).tobytes())
    return h.hexdigest()


def arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes (in name order)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def prediction_key(
    data: str, classifier: str, options: dict[str, Any], positive_index: int | None
) -> str:
    text = json.dumps(
        [FORMAT_VERSION, _versions(), data, classifier, options, positive_index],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


class PredictionCache:
    """Fold predictions by key under ``<cache root>/predictions``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (Path(root).expanduser() if root else cache_root()) / "predictions"

    def info(self) -> dict[str, int]:
        files = list(self.root.glob("*/*.npz"))
        return {"entries": len(files), "bytes": sum(f.stat().st_size for f in files)}

    def clear(self) -> int:
        files = list(self.root.glob("*/*.npz"))
        for f in files:
            f.unlink(missing_ok=True)
        return len(files)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> list[FoldPrediction] | None:
        """The stored predictions, or None when absent or corrupt (then deleted, warned)."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:  # (f: always closed)
                arrays = {name: z[name] for name in z.files}
            stored = arrays.pop("sha256", None)
            if stored is not None and str(stored) != arrays_digest(arrays):
                raise ValueError("checksum mismatch")
            return _unpack(arrays)
        except (OSError, EOFError, KeyError, ValueError, TypeError, zipfile.BadZipFile,
                zlib.error) as exc:  # fmt: skip
            warnings.warn(
                f"Model 1 prediction cache entry {path} is corrupt ({type(exc).__name__}: "
                f"{exc}); it is deleted and the classifier refitted",
                CacheCorruptionWarning,
                stacklevel=2,
            )
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def put(self, key: str, preds: list[FoldPrediction]) -> None:
        arrays: dict[str, np.ndarray] = {"n_folds": np.array(len(preds))}
        for i, p in enumerate(preds):
            arrays[f"fold_{i}"] = np.array(p.fold)
            arrays[f"test_index_{i}"] = np.asarray(p.test_index)
            arrays[f"y_true_{i}"] = np.asarray(p.y_true)
            arrays[f"y_pred_{i}"] = np.asarray(p.y_pred)
            arrays[f"fit_s_{i}"] = np.array(p.fit_s)
            if p.score is not None:
                arrays[f"score_{i}"] = np.asarray(p.score)
        arrays["sha256"] = np.array(arrays_digest(arrays))
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self._path(key), buf.getvalue())


def _unpack(z: Mapping[str, np.ndarray]) -> list[FoldPrediction]:
    """Fold predictions from an entry's arrays (KeyError/ValueError when malformed)."""
    n = int(z["n_folds"])
    out = []
    for i in range(n):
        out.append(
            FoldPrediction(
                fold=int(z[f"fold_{i}"]),
                test_index=z[f"test_index_{i}"],
                y_true=z[f"y_true_{i}"],
                y_pred=z[f"y_pred_{i}"],
                score=z.get(f"score_{i}"),
                fit_s=float(z[f"fit_s_{i}"]),
            )
        )
    return out
