"""Field checks for stored records: each failure is one :class:`RecordError` line.

A :class:`At` is a place in a record file (``results/x.json: cells[3].folds[0].y_pred[7]``);
the checks below take the value found there and raise ``at.error(...)`` naming the file,
the JSON path and what is wrong. Lists of numbers are checked with C-level passes
(``set(map(type, ...))``, ``min``, ``max``) and walked element by element only to name
the first bad one, so checking a large record costs milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.records.cells import RecordError

NUMBER_TYPES = (int, float)


@dataclass(frozen=True)
class At:
    """A JSON path inside one record file."""

    file: str
    path: str = ""

    def key(self, name: str) -> At:
        """The field ``name`` of the object here."""
        return At(self.file, f"{self.path}.{name}" if self.path else name)

    def item(self, index: int) -> At:
        """Element ``index`` of the list here."""
        return At(self.file, f"{self.path}[{index}]")

    def error(self, problem: str) -> RecordError:
        """A RecordError: ``<file>: <path>: <problem>``."""
        return RecordError(
            f"{self.file}: {self.path}: {problem}" if self.path else f"{self.file}: {problem}"
        )


def shown(value: Any) -> str:
    """A short description of a stored value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def is_number(value: Any) -> bool:
    """An int or float (never a bool)."""
    return isinstance(value, NUMBER_TYPES) and not isinstance(value, bool)


def expect(value: Any, kind: type | tuple[type, ...], at: At, what: str, null: bool = False) -> Any:
    """``value`` when it is of ``kind`` (``null=True``: or None); else ``at.error``."""
    if value is None and null:
        return value
    bad_bool = isinstance(value, bool) and bool not in (
        kind if isinstance(kind, tuple) else (kind,)
    )
    if not isinstance(value, kind) or bad_bool:
        raise at.error(f"expected {what}, got {shown(value)}")
    return value


def mapping(value: Any, at: At, null: bool = False) -> Mapping[str, Any] | None:
    """An object (``null=True``: or None)."""
    return expect(value, Mapping, at, "an object", null)


def text(value: Any, at: At, null: bool = False, empty: bool = True) -> str | None:
    """A string (``empty=False``: not ``""``)."""
    expect(value, str, at, "a string" if empty else "a non-empty string", null)
    if value == "" and not empty:
        raise at.error("expected a non-empty string, got an empty one")
    return value


def integer(value: Any, at: At, low: int | None = 0, high: int | None = None) -> int:
    """An int in ``[low, high]`` (either bound None: open)."""
    if type(value) is not int:
        raise at.error(f"expected an integer, got {shown(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise at.error(f"{value} is out of range ({_range(low, high)})")
    return value


def number(
    value: Any, at: At, low: float | None = None, high: float | None = None, null: bool = True
) -> float | None:
    """A finite number in ``[low, high]``; None and NaN (a metric that is 0/0) when ``null``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if null:
            return None
        raise at.error(f"expected a number, got {shown(value)}")
    if not is_number(value):
        raise at.error(f"expected a number{' or null' if null else ''}, got {shown(value)}")
    if not math.isfinite(value):
        raise at.error(f"expected a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise at.error(f"{value!r} is out of range ({_range(low, high)})")
    return float(value)


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"expected {low} to {high}"
    return f"expected at least {low}" if low is not None else f"expected at most {high}"


def index_list(values: Any, at: At, size: int | None, what: str) -> list[int]:
    """A list of ints in ``[0, size)`` (``size`` None: any int >= 0); ``what`` names them."""
    expect(values, list, at, "a list")
    if not values:
        return values
    fast = set(map(type, values)) <= {int} and min(values) >= 0
    if fast and (size is None or max(values) < size):
        return values
    limit = f"0..{size - 1}" if size else ("none (nothing to index)" if size == 0 else ">= 0")
    for i, v in enumerate(values):
        if type(v) is not int or v < 0 or (size is not None and v >= size):
            raise at.item(i).error(f"expected {what} ({limit}), got {shown(v)}")
    return values


def number_list(values: Any, at: At) -> list[float]:
    """A list of finite numbers."""
    expect(values, list, at, "a list")
    kinds = set(map(type, values))
    if kinds <= {int, float} and (float not in kinds or math.isfinite(sum(map(abs, values)))):
        return values
    for i, v in enumerate(values):
        number(v, at.item(i), null=False)
    return values


def is_finite_number(value: Any) -> bool:
    """A finite int or float (never a bool)."""
    return type(value) is int or (type(value) is float and math.isfinite(value))


def optional_number_list(values: Any, at: At) -> list[float | None]:
    """A list of finite numbers or nulls (a NaN read from an older record counts as null)."""
    expect(values, list, at, "a list")
    kinds = set(map(type, values))
    if kinds <= {int, float, type(None)}:
        floats = [v for v in values if type(v) is float] if float in kinds else []
        if all(math.isfinite(v) or math.isnan(v) for v in floats):
            return values
    for i, v in enumerate(values):
        number(v, at.item(i))
    return values


def string_list(values: Any, at: At, unique: bool = False) -> list[str]:
    """A list of strings (``unique``: no repeats)."""
    expect(values, list, at, "a list")
    for i, v in enumerate(values):
        expect(v, str, at.item(i), "a string")
    if unique and len(set(values)) != len(values):
        dup = next(v for i, v in enumerate(values) if v in values[:i])
        raise at.error(f"{dup!r} is listed twice")
    return values
