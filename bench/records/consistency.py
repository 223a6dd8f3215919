"""Stored metrics against stored predictions: a record whose numbers were edited is refused.

Every metric of a cell can be recomputed from its folds' ``y_true`` / ``y_pred``
(docs/results.md). :func:`check_cell_metrics` recomputes, with the project's own
:func:`bench.metrics.metrics_from_confusion`, every confusion-matrix metric of a complete
cell -- pooled and per fold -- and its pooled confusion matrix and prediction count, and
raises a :class:`~bench.records.cells.RecordError` naming the file, the field and the cell
when a stored value disagrees beyond :data:`TOLERANCE`. ROC AUC is left out: it depends on
the scores, which records round to 4 digits. Cost: one ``bincount`` per fold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bench.records.cells import CellRecord
from bench.records.fields import At

TOLERANCE = 1e-6  # absolute; stored values are float64 from the same formulas


def positive_index(cell: CellRecord) -> int | None:
    """Index of a binary cell's positive class (1 when unnamed); None for multi-class."""
    if len(cell.classes) != 2:
        return None
    return cell.classes.index(cell.positive) if cell.positive in cell.classes else 1


def _compare(
    stored: Mapping[str, Any], computed: Mapping[str, float], at: At, cell: CellRecord
) -> None:
    for name, value in computed.items():
        if name not in stored:
            continue
        have = stored[name]
        want = float(value)
        missing = have is None or (isinstance(have, float) and math.isnan(have))
        if math.isnan(want):
            if missing:
                continue
            got = "null (undefined, 0/0)"
        elif missing:
            got = f"{want:.6g}"
        elif abs(float(have) - want) <= TOLERANCE:
            continue
        else:
            got = f"{want:.6g}"
        raise at.key(name).error(
            f"stored {'null' if missing else repr(have)}, but the cell's stored predictions "
            f"give {got} (cell {cell.id}; edited or corrupt record)"
        )


def check_cell_metrics(cell: CellRecord, at: At) -> None:
    """Recompute a complete cell's metrics from its predictions; RecordError on a mismatch."""
    if not cell.complete or len(cell.classes) < 2:
        return
    import numpy as np

    from bench.metrics import confusion_matrix, metrics_from_confusion

    k = len(cell.classes)
    per_fold = np.stack(
        [
            confusion_matrix(
                np.asarray(f.y_true, dtype=np.int64), np.asarray(f.y_pred, dtype=np.int64), k
            )
            for f in cell.folds
        ]
    )
    pooled = per_fold.sum(axis=0)
    pos = positive_index(cell)
    metrics = cell.metrics
    block = at.key("metrics")
    if isinstance(metrics.get("pooled"), Mapping):
        _compare(metrics["pooled"], metrics_from_confusion(pooled, pos), block.key("pooled"), cell)
    fold_values = metrics_from_confusion(per_fold, pos)
    for i, fold in enumerate(cell.folds):
        computed = {name: values[i] for name, values in fold_values.items()}
        _compare(fold.metrics, computed, at.key("folds").item(i).key("metrics"), cell)
    stored = metrics.get("confusion")
    if stored is not None and not np.array_equal(np.asarray(stored), pooled):
        raise block.key("confusion").error(
            f"stored {stored}, but the cell's stored predictions give {pooled.tolist()} "
            f"(cell {cell.id}; edited or corrupt record)"
        )
    n = int(pooled.sum())
    if "n_predictions" in metrics and metrics["n_predictions"] != n:
        raise block.key("n_predictions").error(
            f"stored {metrics['n_predictions']}, but the cell stores {n} test predictions "
            f"(cell {cell.id})"
        )
