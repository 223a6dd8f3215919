"""A declared grid of classifier options, expanded in scikit-learn's ``ParameterGrid`` order.

``grid = { "svm-gaussian" = { C = [0.1, 1, 10] } }`` gives one candidate per
combination of values; parameter names are taken in sorted order and the last
one varies fastest, exactly as ``ParameterGrid`` does, so ties are broken the
same way as ``GridSearchCV`` (the first candidate wins).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.errors import UserError

__all__ = ["GridPoint", "expand_grid", "point_label"]

_SCALARS = (str, int, float, bool)


def point_label(params: Mapping[str, Any]) -> str:
    """``"C=0.1, gamma=scale"`` (the short text of one candidate)."""
    return ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(params.items())) or "defaults"


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class GridPoint:
    """One candidate: a classifier with its full options (suite options + this point's values)."""

    classifier: str
    params: dict[str, Any] = field(hash=False)
    options: dict[str, Any] = field(hash=False)
    index: int = 0

    @property
    def label(self) -> str:
        return point_label(self.params)

    @property
    def alias(self) -> str:
        """A unique name for this candidate among all of a protocol's candidates."""
        return f"{self.classifier}[{json.dumps(self.params, sort_keys=True)}]"


def expand_grid(
    grid: Mapping[str, Any], base_options: Mapping[str, Mapping[str, Any]], where: str
) -> dict[str, list[GridPoint]]:
    """``{classifier: [GridPoint, ...]}``; :class:`UserError` names ``where.<clf>.<param>``."""
    if not isinstance(grid, Mapping) or not grid:
        raise UserError(f"{where}: expected a table of classifiers, each a table of value lists")
    out: dict[str, list[GridPoint]] = {}
    for name, params in grid.items():
        here = f"{where}.{name}"
        if not isinstance(params, Mapping) or not params:
            raise UserError(
                f"{here}: expected a table of option -> list of values, e.g. {{ C = [0.1, 1] }}"
            )
        keys = sorted(params)
        values = []
        for key in keys:
            vals = params[key]
            if not isinstance(vals, list) or not vals:
                raise UserError(f"{here}.{key}: expected a non-empty list of values")
            for i, v in enumerate(vals):
                if not isinstance(v, _SCALARS):
                    raise UserError(f"{here}.{key}[{i}]: expected a number, string or boolean")
                if isinstance(v, float) and not math.isfinite(v):
                    raise UserError(f"{here}.{key}[{i}]: {v!r} is not a finite number")
            if len({json.dumps(v) for v in vals}) != len(vals):
                raise UserError(f"{here}.{key}: repeated values {vals!r}")
            values.append(vals)
        base = dict(base_options.get(name, {}))
        points = []
        for i, combo in enumerate(itertools.product(*values)):
            chosen = dict(zip(keys, combo, strict=True))
            points.append(GridPoint(name, chosen, {**base, **chosen}, i))
        out[name] = points
    return out
