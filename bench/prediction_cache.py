"""Cached Model 1 predictions: the same features, labels, folds and classifier give the same
predictions, so a rerun refits nothing.

Keyed by a digest of the feature matrix, labels, folds, classifier name and
options, the positive class, the versions of the packages that fit it and a
digest of its source code (:mod:`bench.code_digest`: an edited classifier
misses the cache in an editable checkout too). Entries
are ``.npz`` files written atomically, each with a SHA-256 of its arrays
(``sha256``). An entry that is truncated, not a zip file, has no checksum,
does not match its checksum, or does not have the exact shape of an entry
(:func:`unpack_entry`) -- or that fails in any other way while it is read -- is
reported once with a :class:`~bench.feature_cache.CacheCorruptionWarning`,
deleted and refitted, as feature packs are. Entries written before checksums
existed are refitted the same way (a cache entry is only ever worth a refit,
and one without a checksum cannot be told from an edited one).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from bench.atomic import atomic_write_bytes
from bench.cache_paths import cache_root
from bench.crossval import FoldPrediction
from bench.feature_cache import CacheCorruptionWarning
from bench.readable import readable

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
    data: str,
    classifier: str,
    options: dict[str, Any],
    positive_index: int | None,
    code: str = "",
) -> str:
    """The entry's key; ``code`` is :func:`bench.code_digest.classifier_code` of its factory."""
    parts: list[Any] = [FORMAT_VERSION, _versions(), data, classifier, options, positive_index]
    if code:
        parts.append(code)
    text = json.dumps(parts, sort_keys=True, default=str)
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
        """The stored predictions, or None when absent or bad (then deleted, warned once)."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:  # (f: always closed)
                arrays = {name: z[name] for name in z.files}
            return unpack_entry(arrays)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever fails to decode is a bad entry
            warnings.warn(
                f"Model 1 prediction cache entry {readable(path)} is corrupt "
                f"({type(exc).__name__}: {exc}); it is deleted and the classifier refitted",
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


def _scalar(arrays: Mapping[str, np.ndarray], name: str, kinds: str) -> Any:
    """The 0-d array ``name`` as a Python value; ValueError unless its dtype kind is in ``kinds``."""
    if name not in arrays:
        raise ValueError(f"array {name!r} is missing")
    arr = arrays[name]
    if arr.shape != () or arr.dtype.kind not in kinds:
        raise ValueError(f"array {name!r} must be a scalar, got {arr.dtype} {arr.shape}")
    return arr.item()


def _vector(arrays: Mapping[str, np.ndarray], name: str, n: int | None) -> np.ndarray:
    """The 1-d integer array ``name`` (of length ``n`` when given, values >= 0)."""
    if name not in arrays:
        raise ValueError(f"array {name!r} is missing")
    arr = arrays[name]
    if arr.ndim != 1 or arr.dtype.kind not in "iu" or (n is not None and len(arr) != n):
        raise ValueError(f"array {name!r} must be {n or 'N'} integers, got {arr.dtype} {arr.shape}")
    if len(arr) and int(arr.min()) < 0:
        raise ValueError(f"array {name!r} holds a negative value")
    return arr


def unpack_entry(arrays: Mapping[str, np.ndarray]) -> list[FoldPrediction]:
    """The fold predictions an entry's arrays hold, checked whole.

    ValueError when the checksum (``sha256``) is missing or does not match, or when
    the arrays are not exactly an entry: ``n_folds`` >= 1 and, per fold ``i``,
    ``fold_i``, ``test_index_i``, ``y_true_i``, ``y_pred_i`` (integers, one per test
    row), ``fit_s_i`` (seconds) and an optional float ``score_i`` ((n,) or (n, k)).
    """
    arrays = dict(arrays)
    stored = arrays.pop("sha256", None)
    if stored is None:
        raise ValueError("no checksum (sha256): written by an older LeukoBench, or edited")
    if stored.shape != () or stored.dtype.kind != "U" or str(stored) != arrays_digest(arrays):
        raise ValueError("checksum mismatch")
    n = _scalar(arrays, "n_folds", "iu")
    if not 1 <= n <= (len(arrays) - 1) // 5:
        raise ValueError(f"n_folds = {n} does not fit the {len(arrays)} arrays stored")
    known = {"n_folds"}
    out: list[FoldPrediction] = []
    for i in range(n):
        test = _vector(arrays, f"test_index_{i}", None)
        fit_s = _scalar(arrays, f"fit_s_{i}", "fiu")
        if not (math.isfinite(fit_s) and fit_s >= 0):
            raise ValueError(f"fit_s_{i} = {fit_s}")
        score = arrays.get(f"score_{i}")
        if score is not None and (
            score.dtype.kind != "f" or score.ndim not in (1, 2) or len(score) != len(test)
        ):
            raise ValueError(f"array 'score_{i}' has {score.dtype} {score.shape}")
        out.append(
            FoldPrediction(
                fold=int(_scalar(arrays, f"fold_{i}", "iu")),
                test_index=test,
                y_true=_vector(arrays, f"y_true_{i}", len(test)),
                y_pred=_vector(arrays, f"y_pred_{i}", len(test)),
                score=score,
                fit_s=float(fit_s),
            )
        )
        known |= {f"{k}_{i}" for k in ("fold", "test_index", "y_true", "y_pred", "fit_s", "score")}
    if set(arrays) - known:
        raise ValueError(f"unexpected arrays {sorted(set(arrays) - known)[:3]}")
    if len({p.fold for p in out}) != n:
        raise ValueError("a fold is stored twice")
    return out
