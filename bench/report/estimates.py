"""Metric estimates of typed cells: pooled value with its 95% interval, combined over seeds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.metrics import compute_metrics, confusion_matrix, wilson_counts
from bench.metrics import per_class_table as metrics_per_class_table
from bench.records import CellRecord
from bench.stats import wilson_interval

PAPER_METRICS = ("precision", "recall", "accuracy", "specificity")
EXTRA_METRICS = ("f1", "mcc", "roc_auc", "balanced_accuracy")
# multi-class records store macro averages under these names (bench.metrics)
MACRO_ALIASES = {"precision": "precision_macro", "recall": "recall_macro", "f1": "f1_macro"}
FRACTION_METRICS = ("mcc", "roc_auc")  # shown as fractions, not percent
METRIC_NAMES = {
    "precision": "Precision",
    "recall": "Recall",
    "accuracy": "Accuracy",
    "specificity": "Specificity",
    "f1": "F1",
    "mcc": "MCC",
    "roc_auc": "ROC AUC",
    "balanced_accuracy": "Balanced acc.",
}
LEAKY_NOTE = (
    "LEAKY: the split put augmented copies of one source image on both sides "
    "(the paper's augment-then-split order); these numbers are inflated and not "
    "comparable with leakage-safe rows."
)
NOT_PRETRAINED_NOTE = "not pretrained: the backbone ran with random weights."


@dataclass(frozen=True)
class Estimate:
    """A metric value with its 95% interval (fractions, not percent)."""

    mean: float | None
    low: float | None = None
    high: float | None = None
    n_seeds: int = 1

    def fmt(self, percent: bool = True) -> str:
        if self.mean is None or math.isnan(self.mean):
            return "-"
        scale, digits = (100.0, 1) if percent else (1.0, 3)
        text = f"{self.mean * scale:.{digits}f}"
        if self.low is not None and self.high is not None:
            text += f" [{self.low * scale:.{digits}f}, {self.high * scale:.{digits}f}]"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci": [self.low, self.high], "n_seeds": self.n_seeds}


def as_cell(cell: CellRecord | Mapping[str, Any], where: str = "cell") -> CellRecord:
    """``cell`` typed (a stored dict is read and checked: RecordError names the field)."""
    return cell if isinstance(cell, CellRecord) else CellRecord.from_json(cell, where)


def wilson(successes: float, n: float) -> tuple[float, float]:
    """Wilson score 95% interval for a proportion (0/0 -> (nan, nan))."""
    return wilson_interval(successes, n)


def pooled_predictions(
    cell: CellRecord | Mapping[str, Any],
) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """(y_true, y_pred, scores) over all folds of a cell."""
    cell = as_cell(cell)
    y_true: list[int] = []
    y_pred: list[int] = []
    scores: list[Any] = []
    for fold in cell.folds:
        y_true += list(fold.y_true)
        y_pred += list(fold.y_pred)
        scores += list(fold.score) if fold.score is not None else [None] * len(fold.y_true)
    return np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int), scores


def n_classes(cell: CellRecord | Mapping[str, Any]) -> int:
    """Classes of a cell (at least 2)."""
    cell = as_cell(cell)
    return max(len(cell.classes), 2)


def positive_index(cell: CellRecord | Mapping[str, Any]) -> int | None:
    """Index of the positive class of a binary cell (default 1); None for multi-class."""
    cell = as_cell(cell)
    if n_classes(cell) != 2:
        return None
    return cell.classes.index(cell.positive) if cell.positive in cell.classes else 1


def confusion(cell: CellRecord | Mapping[str, Any]) -> np.ndarray:
    """Pooled confusion matrix (rows true, columns predicted), from stored or recomputed."""
    cell = as_cell(cell)
    stored = cell.metrics.get("confusion")
    if stored:
        return np.asarray(stored, dtype=int)
    y_true, y_pred, _ = pooled_predictions(cell)
    return confusion_matrix(y_true, y_pred, len(cell.classes) or 2)


def recompute_metrics(
    cell: CellRecord | Mapping[str, Any],
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Pooled metrics (:func:`bench.metrics.compute_metrics`) and Wilson CIs from a cell's
    stored predictions.

    Binary: positive class from ``cell.positive``. Multi-class: macro averages, also
    under the plain names (``precision`` = ``precision_macro``) plus macro specificity.
    """
    cell = as_cell(cell)
    y_true, y_pred, scores = pooled_predictions(cell)
    k, pos = n_classes(cell), positive_index(cell)
    score = None if not scores or any(s is None for s in scores) else np.asarray(scores, float)
    pooled = compute_metrics(y_true, y_pred, score, n_classes=k, positive_index=pos)
    cm = confusion_matrix(y_true, y_pred, k)
    ci = {name: list(wilson(*counts)) for name, counts in wilson_counts(cm, pos).items()}
    if pos is None:
        for name, macro in MACRO_ALIASES.items():
            pooled[name] = pooled[macro]
        per = per_class_counts(cm)
        pooled["specificity"] = float(np.nanmean([row["specificity"] for row in per]))
    return pooled, ci


def one_vs_rest(cm: np.ndarray, i: int) -> np.ndarray:
    """2x2 confusion matrix of class ``i`` (index 1) against all others (index 0)."""
    tp = cm[i, i]
    fn = cm[i].sum() - tp
    fp = cm[:, i].sum() - tp
    tn = cm.sum() - tp - fn - fp
    return np.array([[tn, fp], [fn, tp]])


def per_class_counts(cm: np.ndarray) -> list[dict[str, Any]]:
    """One-vs-rest precision/recall/specificity/f1 (+ Wilson CI, support) per class."""
    table = metrics_per_class_table(cm)
    out = []
    for i in range(cm.shape[0]):
        row: dict[str, Any] = dict(table[str(i)])
        counts = wilson_counts(one_vs_rest(cm, i), 1)
        for name in ("precision", "recall", "specificity"):
            row[f"{name}_ci"] = wilson(*counts[name])
        row["f1_ci"] = (None, None)
        out.append(row)
    return out


def cell_estimate(cell: CellRecord | Mapping[str, Any], metric: str) -> Estimate:
    """The pooled ``metric`` of one cell with its stored CI (recomputed when absent)."""
    cell = as_cell(cell)
    pooled = cell.metrics.get("pooled") or {}
    key = metric if metric in pooled else MACRO_ALIASES.get(metric)
    if key in pooled:
        ci = (cell.metrics.get("ci") or {}).get(key)
        value = pooled.get(key)
    else:
        recomputed, cis = recompute_metrics(cell)
        value, ci = recomputed.get(metric), cis.get(metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Estimate(None)
    low, high = ci if ci and len(ci) == 2 and None not in ci else (None, None)
    return Estimate(float(value), low, high)


def combine(estimates: Sequence[Estimate]) -> Estimate:
    """One estimate over seeds: itself for one seed; mean and t-interval for several."""
    usable = [e for e in estimates if e.mean is not None and not math.isnan(e.mean)]
    if not usable:
        return Estimate(None, n_seeds=len(estimates))
    if len(usable) == 1:
        return usable[0]
    from scipy import stats

    values = np.asarray([e.mean for e in usable], dtype=float)
    mean = float(values.mean())
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return Estimate(mean, max(0.0, mean - half), min(1.0, mean + half), n_seeds=len(usable))
