"""``--set KEY.PATH=VALUE`` overrides of a suite, and the finite-number check they share."""

from __future__ import annotations

import math
import tomllib
from typing import Any

from bench.errors import UserError
from bench.registry import suggest

#: The suite file's top-level tables (``--set`` paths start with one of them).
TOP_LEVEL = ("suite", "data", "augment", "protocol", "backbone", "classifier", "run")


# -- overrides -----------------------------------------------------------------
def non_finite(value: Any, where: str = "") -> str | None:
    """The key path of the first NaN or infinite number inside ``value``, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "value"
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = non_finite(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"protocol.0.folds=5"`` -> (["protocol", "0", "folds"], 5). Values are TOML literals.

    NaN and infinite numbers are refused (no setting means them).
    """
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    keys = [k.strip() for k in key.strip().split(".")]
    if not keys or not all(keys):
        raise UserError(f"--set {text!r}: empty key in the path (write KEY.PATH=VALUE)")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word is a string
    bad = non_finite(value)
    if bad:
        raise UserError(f"--set {text!r}: {raw.strip()} is not a finite number; give a real value")
    return keys, value


def apply_override(raw: dict[str, Any], keys: list[str], value: Any) -> None:
    """Set ``raw[keys...] = value``; missing tables on the way are created.

    The first key must be a top-level table (close matches suggested); a path
    that goes *into* a value that is not a table or list (``protocol.0.folds.x``)
    is a UserError.
    """
    dotted = ".".join(keys)
    if keys[0] not in TOP_LEVEL:
        hint = suggest(keys[0], TOP_LEVEL) or f" (tables: {', '.join(TOP_LEVEL)})"
        raise UserError(f"--set {dotted}: unknown table {keys[0]!r}{hint}")
    node: Any = raw
    for i, key in enumerate(keys[:-1]):
        nxt = keys[i + 1]
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise UserError(f"--set {dotted}: no list item {key!r} (the list has {len(node)})")
            node = node[int(key)]
        else:
            if key not in node:
                node[key] = [] if nxt.isdigit() else {}
            node = node[key]
        if not isinstance(node, (dict, list)):
            here = ".".join(keys[: i + 1])
            raise UserError(
                f"--set {dotted}: {here} is a value ({node!r}), not a table; "
                f"set {here}=VALUE instead"
            )
    last = keys[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise UserError(f"--set {dotted}: no list item {last!r} (the list has {len(node)})")
        node[int(last)] = value
    else:
        node[last] = value


# -- validation ----------------------------------------------------------------
