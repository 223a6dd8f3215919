"""A fine-tuning fold's cached work, checked when read: its finished result and its training state.

``runs/<cell>/fold-NN/result.json`` holds ``{"key", "result", "sha256"}``: the
SHA-256 of the canonical JSON of key and result, so a bit flip in a stored
prediction is caught. A result that fails its checksum, cannot be parsed or
lacks a field is warned about once (:class:`~bench.feature_cache.CacheCorruptionWarning`)
and the fold is trained again; results written before the checksum are read
when they decode and their arrays agree in length. A training state
(``state.pt``) that cannot be read at all is treated the same way: the fold
starts afresh instead of stopping the run.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench.checkpoint import atomic_write_json, load_training_state
from bench.errors import UserError
from bench.feature_cache import CacheCorruptionWarning
from bench.readable import readable
from bench.strict_json import dumps as strict_dumps

T = TypeVar("T")


def result_digest(key: str, result: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a fold's key and result."""
    text = json.dumps({"key": key, "result": result}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def write_result(path: Path, key: str, result: dict[str, Any]) -> None:
    """Store a finished fold's result with its checksum (atomically).

    The digest is taken over the result as it reads back (strict JSON: non-finite
    numbers become null), so what is checked is what is stored.
    """
    stored = json.loads(strict_dumps(result))
    atomic_write_json(path, {"key": key, "result": stored, "sha256": result_digest(key, stored)})


def _bad(path: Path, why: str) -> None:
    warnings.warn(
        f"fine-tuning result {readable(path)} is corrupt ({why}); this fold is trained again",
        CacheCorruptionWarning,
        stacklevel=3,
    )


def read_result(path: Path, key: str, decode: Callable[[dict[str, Any]], T]) -> T | None:
    """The fold's stored result decoded by ``decode`` when it is this key's and intact, else None.

    A result of another key (other inputs) is silently not this fold's; a damaged one is
    warned about. ``decode`` raises (KeyError, TypeError, ValueError) on a malformed result.
    """
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        _bad(path, f"unreadable: {exc}")
        return None
    if not isinstance(saved, dict) or not isinstance(saved.get("result"), dict):
        _bad(path, "not a fold result")
        return None
    if saved.get("key") != key:
        return None
    want = saved.get("sha256")
    if want is not None and want != result_digest(key, saved["result"]):
        _bad(path, "it does not match its checksum")
        return None
    try:
        return decode(saved["result"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        _bad(path, f"malformed: {type(exc).__name__}: {exc}")
        return None


def read_state(path: Path) -> dict[str, Any]:
    """The training state at ``path``, or ``{}`` (warned) when it is damaged: start afresh."""
    if not path.is_file():
        return {}
    try:
        return load_training_state(path)
    except UserError as exc:
        cause = exc.__cause__
        lines = str(cause).strip().splitlines() if cause is not None else ["another schema"]
        lines = lines or [type(cause).__name__]
        warnings.warn(
            f"training state {readable(path)} is corrupt or not a LeukoBench state "
            f"({lines[0][:200]}); this fold is trained again from its start",
            CacheCorruptionWarning,
            stacklevel=2,
        )
        return {}
