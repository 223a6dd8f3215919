"""Strict JSON out, lenient JSON in: the one way LeukoBench writes JSON.

Python's ``json`` writes ``NaN``, ``Infinity`` and ``-Infinity`` as bare
tokens, which are not JSON (RFC 8259): ``jq``, browsers and most other
languages refuse such files. :func:`dumps` writes every non-finite float
(Python or numpy) as ``null`` and never emits those tokens; numpy scalars and
arrays, tuples and paths become their plain JSON forms. Readers keep using
``json.loads``, which still accepts the tokens in files written before.
"""

from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import Any


def plain(obj: Any) -> Any:
    """``obj`` as plain JSON values: non-finite floats -> None, numpy -> Python, tuples -> lists."""
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):  # (numpy.float64 is a float too)
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {_key(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, PurePath):
        return obj.as_posix()
    import numpy as np

    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return plain(float(obj))
    if isinstance(obj, (set, frozenset)):
        return [plain(v) for v in sorted(obj, key=str)]
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _key(key: Any) -> Any:
    if isinstance(key, (str, int, bool)) or key is None:
        return key
    if isinstance(key, float):
        return key if math.isfinite(key) else str(key)
    return str(key)


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`plain` ``(obj)`` with ``allow_nan=False`` (strict JSON).

    Keyword arguments (``indent``, ``sort_keys``, ``separators``, ...) go to ``json.dumps``.
    """
    return json.dumps(plain(obj), allow_nan=False, **kwargs)
