"""Statistics recomputed from a stored record, over independent units (report-side helpers).

* :func:`cell_metrics_over_units` -- a stored cell's ``metrics`` block, intervals over
  source images or patients (records written before units, or to re-check one).
* :func:`cell_unit_counts` / :func:`cell_unit_text` -- "3480 predictions of 696 source images".
* :func:`units_clause` / :func:`record_unit_text` -- "696 images, 696 units (source image)"
  for a table caption; :func:`ci_basis` -- what the stored intervals count.

Units come from :mod:`bench.units`; the maths from :func:`bench.metrics.summarize`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bench.metrics import summarize
from bench.units import (
    UNIT_IMAGE,
    UNIT_PATIENT,
    UNIT_SAMPLE,
    cell_units,
    get,
    record_sample_units,
    unit_text,
)


def _fold_arrays(cell: Any) -> list[dict[str, Any]]:
    """The stored folds as ``summarize`` reads them (scores as arrays or None)."""
    out = []
    for f in get(cell, "folds", []):
        score = get(f, "score")
        out.append(
            {
                "y_true": list(get(f, "y_true", [])),
                "y_pred": list(get(f, "y_pred", [])),
                "score": None if score is None or len(score) == 0 else np.asarray(score, float),
            }
        )
    return out


def cell_metrics_over_units(
    cell: Any, dataset: Mapping[str, Any] | None = None, n_boot: int = 1000
) -> dict[str, Any]:
    """A stored cell's ``metrics`` block recomputed from its predictions, intervals over units.

    Point metrics equal the stored ones; ``ci``, ``unit`` and ``n_units`` reflect the
    record's units (patients when ``dataset.groups`` is stored, else source images).
    """
    classes = list(get(cell, "classes", []))
    k = max(len(classes), 2)
    positive = get(cell, "positive")
    pos = (classes.index(positive) if positive in classes else 1) if k == 2 else None
    units, unit = cell_units(cell, dataset)
    return summarize(
        _fold_arrays(cell),
        n_classes=k,
        positive_index=pos,
        seed=int(get(cell, "seed", 0)),
        n_boot=n_boot,
        units=units,
        unit=unit,
    )


def cell_unit_counts(cell: Any, dataset: Mapping[str, Any] | None = None) -> tuple[int, int, str]:
    """(test predictions, independent units among them, unit kind) of a stored cell.

    From the cell's ``metrics`` block when it stores them (records written with
    units), else counted from ``samples.source`` (and ``dataset.groups``).
    """
    metrics = get(cell, "metrics", {})
    if isinstance(metrics, Mapping) and "n_units" in metrics and "n_predictions" in metrics:
        return int(metrics["n_predictions"]), int(metrics["n_units"]), str(metrics.get("unit"))
    units, unit = cell_units(cell, dataset)
    n = sum(len(get(f, "y_true", [])) for f in get(cell, "folds", []))
    if units is None:
        return n, n, UNIT_SAMPLE
    return n, len(set(units.tolist())), unit


def cell_unit_text(cell: Any, dataset: Mapping[str, Any] | None = None) -> str:
    """``"3480 predictions of 696 source images"`` for one stored cell."""
    return unit_text(*cell_unit_counts(cell, dataset))


def units_clause(record: Any) -> str:
    """``"696 units (source image)"``: the independent test units per method of a record.

    A range when methods differ (k-fold and hold-out); a note follows when the
    dataset has patients but the record stores no patient ids.
    """
    dataset = get(record, "dataset", {}) or {}
    cells = [c for c in get(record, "cells", []) if get(c, "folds")]
    counts, units = set(), set()
    for c in cells:
        _, n_units, unit = cell_unit_counts(c, dataset)
        counts.add(n_units)
        units.add(unit)
    ordered = sorted(counts)
    shown = "?" if not ordered else str(ordered[0])
    if len(ordered) > 1:
        shown = f"{ordered[0]}-{ordered[-1]}"
    text = f"{shown} units ({', '.join(sorted(units)) or UNIT_IMAGE})"
    note = record_sample_units(cells[0], dataset)[2] if cells else None
    if note and UNIT_PATIENT not in units:
        text += f" [{note}]"
    return text


def record_unit_text(record: Any) -> str:
    """``"696 images, 696 units (source image)"`` for a record's caption (Table 1)."""
    dataset = get(record, "dataset", {}) or {}
    return f"{dataset.get('n_images', '?')} images, {units_clause(record)}"


def ci_basis(record: Any) -> str:
    """What a record's stored intervals count: ``"over independent units"`` or, for
    records written before units, ``"over test predictions (record predates units)"``."""
    cells = [c for c in get(record, "cells", []) if get(c, "folds")]
    stored = [get(c, "metrics", {}) for c in cells]
    if stored and all(isinstance(m, Mapping) and "unit" in m for m in stored):
        kinds = {str(m["unit"]) for m in stored}
        if kinds == {UNIT_SAMPLE}:
            return "over test predictions"
        return "over independent units"
    return "over test predictions (record predates units)"
