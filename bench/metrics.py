"""Predictions -> metrics: per fold, pooled, mean +- std, 95% intervals.

Every metric is computed from a confusion matrix ``C[true, pred]`` (batched, so
a bootstrap is one vectorised pass) plus ROC-AUC from scores. Undefined ratios
(0/0, e.g. precision with no positive prediction) are ``nan``, never 0, and
averages over classes skip them (scikit-learn's ``zero_division=np.nan``).
See docs/metrics.md.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from bench.stats import all_distinct, clustered_wilson, percentile_interval, wilson_interval
from bench.units import UNIT_SAMPLE

BINARY_KEYS = (
    "precision",
    "recall",
    "accuracy",
    "specificity",
    "f1",
    "balanced_accuracy",
    "mcc",
    "roc_auc",
)
MULTICLASS_KEYS = (
    "accuracy",
    "balanced_accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "mcc",
    "roc_auc",
)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1), np.nan)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``C[i, j]`` = number of samples of true class ``i`` predicted as ``j``."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def _batched_confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(B, k, k) confusion matrices of (B, n) label arrays."""
    b = y_true.shape[0]
    code = (np.arange(b)[:, None] * n_classes + y_true) * n_classes + y_pred
    flat = np.bincount(code.ravel(), minlength=b * n_classes * n_classes)
    return flat.reshape(b, n_classes, n_classes)


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        count = np.sum(np.isfinite(a), axis=axis)
        total = np.nansum(a, axis=axis)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _mcc(c: np.ndarray) -> np.ndarray:
    """Matthews (Gorodkin R_K) correlation of (..., k, k) confusion matrices."""
    c = c.astype(float)
    t = c.sum(axis=-1)  # true counts per class
    p = c.sum(axis=-2)  # predicted counts per class
    n = c.sum(axis=(-1, -2))
    correct = np.trace(c, axis1=-2, axis2=-1)
    cov_ytyp = correct * n - np.sum(t * p, axis=-1)
    cov_ypyp = n * n - np.sum(p * p, axis=-1)
    cov_ytyt = n * n - np.sum(t * t, axis=-1)
    return _div(cov_ytyp, np.sqrt(cov_ytyt * cov_ypyp))


def metrics_from_confusion(c: np.ndarray, positive_index: int | None) -> dict[str, np.ndarray]:
    """Metrics of (..., k, k) confusion matrices (without ROC-AUC).

    Binary metrics when ``positive_index`` is given (k must be 2), else multi-class.
    """
    c = np.asarray(c)
    n = c.sum(axis=(-1, -2))
    correct = np.trace(c, axis1=-2, axis2=-1)
    out: dict[str, np.ndarray] = {"accuracy": _div(correct, n)}
    if positive_index is not None:
        neg = 1 - positive_index
        tp = c[..., positive_index, positive_index]
        fn = c[..., positive_index, neg]
        fp = c[..., neg, positive_index]
        tn = c[..., neg, neg]
        out["precision"] = _div(tp, tp + fp)
        out["recall"] = _div(tp, tp + fn)
        out["specificity"] = _div(tn, tn + fp)
        out["f1"] = _div(2 * tp, 2 * tp + fp + fn)
        out["balanced_accuracy"] = _nanmean(
            np.stack([out["recall"], out["specificity"]], axis=-1), axis=-1
        )
        out["mcc"] = _mcc(c)
        return out
    support = c.sum(axis=-1)
    predicted = c.sum(axis=-2)
    diag = np.diagonal(c, axis1=-2, axis2=-1)
    precision = _div(diag, predicted)
    recall = _div(diag, support)
    f1 = _div(2 * diag, support + predicted)
    weights = _div(support, n[..., None] if np.ndim(n) else n)
    out["balanced_accuracy"] = _nanmean(recall, axis=-1)
    for name, per_class in (("precision", precision), ("recall", recall), ("f1", f1)):
        out[f"{name}_macro"] = _nanmean(per_class, axis=-1)
        finite = np.isfinite(per_class)
        w = np.where(finite, weights, 0.0)
        out[f"{name}_weighted"] = _div(
            np.sum(np.where(finite, per_class, 0.0) * w, axis=-1), np.sum(w, axis=-1)
        )
    out["mcc"] = _mcc(c)
    return out


def _binary_auc(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """ROC-AUC (Mann-Whitney, ties count half) of (B, n) 0/1 labels and scores."""
    y = np.atleast_2d(y).astype(bool)
    s = np.atleast_2d(np.asarray(s, dtype=float))
    ranks = rankdata(s, axis=-1)
    n_pos = y.sum(axis=-1)
    n_neg = y.shape[-1] - n_pos
    u = np.sum(np.where(y, ranks, 0.0), axis=-1) - n_pos * (n_pos + 1) / 2
    return _div(u, n_pos * n_neg)


def roc_auc(
    y_true: np.ndarray, score: np.ndarray | None, *, n_classes: int, positive_index: int | None
) -> float:
    """Binary: AUC of the positive-class score. Multi-class: macro one-vs-rest AUC of
    ``(n, k)`` probabilities over the classes present. ``nan`` if undefined."""
    if score is None:
        return math.nan
    y_true = np.asarray(y_true)
    score = np.asarray(score, dtype=float)
    if positive_index is not None:
        if score.ndim != 1:
            return math.nan
        return float(_binary_auc(y_true == positive_index, score)[0])
    if score.ndim != 2 or score.shape[1] != n_classes:
        return math.nan
    aucs = [float(_binary_auc(y_true == c, score[:, c])[0]) for c in range(n_classes)]
    finite = [a for a in aucs if math.isfinite(a)]
    return float(np.mean(finite)) if finite else math.nan


def compute_metrics(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    score: Sequence[float] | np.ndarray | None = None,
    *,
    n_classes: int,
    positive_index: int | None,
) -> dict[str, float]:
    """All scalar metrics of one set of predictions (see docs/metrics.md).

    Binary when ``positive_index`` is given: the paper's precision TP/(TP+FP),
    recall TP/(TP+FN), accuracy, specificity TN/(TN+FP), plus f1,
    balanced_accuracy, mcc and roc_auc (``nan`` without scores or with one class).
    Multi-class otherwise: accuracy, balanced accuracy, macro/weighted
    precision/recall/f1, mcc, roc_auc (macro OvR of probabilities).
    """
    if positive_index is not None and n_classes != 2:
        raise ValueError("positive_index is only meaningful for two classes")
    c = confusion_matrix(y_true, y_pred, n_classes)
    out = {key: float(v) for key, v in metrics_from_confusion(c, positive_index).items()}
    out["roc_auc"] = roc_auc(
        y_true,
        None if score is None else np.asarray(score, dtype=float),
        n_classes=n_classes,
        positive_index=positive_index,
    )
    keys = BINARY_KEYS if positive_index is not None else MULTICLASS_KEYS
    return {key: out[key] for key in keys}


def per_class_table(c: np.ndarray) -> dict[str, dict[str, float]]:
    """``{"<class index>": {precision, recall, f1, specificity, support}}`` of a confusion matrix."""
    c = np.asarray(c)
    n = c.sum()
    table: dict[str, dict[str, float]] = {}
    for i in range(c.shape[0]):
        tp = c[i, i]
        fp = c[:, i].sum() - tp
        fn = c[i, :].sum() - tp
        tn = n - tp - fp - fn
        table[str(i)] = {
            "precision": float(_div(tp, tp + fp)),
            "recall": float(_div(tp, tp + fn)),
            "f1": float(_div(2 * tp, 2 * tp + fp + fn)),
            "specificity": float(_div(tn, tn + fp)),
            "support": int(tp + fn),
        }
    return table


def _get(fold: Any, key: str) -> Any:
    return fold[key] if isinstance(fold, dict) else getattr(fold, key)


def _pooled_score(folds: Sequence[Any]) -> np.ndarray | None:
    scores = [_get(f, "score") for f in folds]
    if any(s is None for s in scores):
        return None
    return np.concatenate([np.asarray(s, dtype=float) for s in scores])


def fold_metrics(
    folds: Sequence[Any], *, n_classes: int, positive_index: int | None
) -> list[dict[str, float]]:
    """:func:`compute_metrics` of each fold."""
    return [
        compute_metrics(
            _get(f, "y_true"),
            _get(f, "y_pred"),
            _get(f, "score"),
            n_classes=n_classes,
            positive_index=positive_index,
        )
        for f in folds
    ]


def wilson_counts(c: np.ndarray, positive_index: int | None) -> dict[str, tuple[int, int]]:
    """``{metric: (successes, trials)}`` of the proportions that get a Wilson interval."""
    counts = {"accuracy": (int(np.trace(c)), int(c.sum()))}
    if positive_index is not None:
        neg = 1 - positive_index
        tp, fn = c[positive_index, positive_index], c[positive_index, neg]
        fp, tn = c[neg, positive_index], c[neg, neg]
        counts["precision"] = (int(tp), int(tp + fp))
        counts["recall"] = (int(tp), int(tp + fn))
        counts["specificity"] = (int(tn), int(tn + fp))
    return counts


def unit_wilson_counts(
    c_units: np.ndarray, positive_index: int | None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`wilson_counts` per unit: ``{metric: (successes[u], trials[u])}`` of (K, k, k)."""
    c = np.asarray(c_units)
    counts = {"accuracy": (np.trace(c, axis1=-2, axis2=-1), c.sum(axis=(-1, -2)))}
    if positive_index is not None:
        neg = 1 - positive_index
        tp, fn = c[:, positive_index, positive_index], c[:, positive_index, neg]
        fp, tn = c[:, neg, positive_index], c[:, neg, neg]
        counts["precision"] = (tp, tp + fp)
        counts["recall"] = (tp, tp + fn)
        counts["specificity"] = (tn, tn + fp)
    return counts


def summarize(
    folds: Sequence[Any],
    *,
    n_classes: int,
    positive_index: int | None,
    seed: int = 0,
    n_boot: int = 1000,
    units: Sequence[Any] | np.ndarray | None = None,
    unit: str | None = None,
) -> dict[str, Any]:
    """The ``metrics`` block of a result cell (docs/results.md).

    ``folds`` are FoldPrediction-like (attributes or dict keys ``y_true``,
    ``y_pred``, ``score``). Returns ``pooled`` (metrics of all test
    predictions together), ``mean`` and ``std`` (across folds, nan-skipping,
    ddof=1), ``ci`` (95%: Wilson for the pooled proportions accuracy /
    precision / recall / specificity, seeded percentile bootstrap for the rest),
    ``unit``, ``n_units``, ``n_predictions``, ``per_class`` and ``confusion``.

    ``units`` gives the independent unit (source image or patient id) of each
    pooled test prediction, in fold order (:func:`bench.units.pooled_units`);
    ``unit`` names its kind. Intervals are then computed over units: Wilson
    with a clustered effective sample size (:func:`bench.stats.clustered_wilson`)
    and a bootstrap that resamples units. Without ``units`` every prediction is
    its own unit (``unit = "sample"``). Point metrics never depend on ``units``.
    """
    y_true = np.concatenate([np.asarray(_get(f, "y_true"), dtype=np.int64) for f in folds])
    y_pred = np.concatenate([np.asarray(_get(f, "y_pred"), dtype=np.int64) for f in folds])
    score = _pooled_score(folds)
    pooled = compute_metrics(
        y_true, y_pred, score, n_classes=n_classes, positive_index=positive_index
    )
    per_fold = fold_metrics(folds, n_classes=n_classes, positive_index=positive_index)
    keys = list(pooled)
    table = np.array([[m[k] for k in keys] for m in per_fold], dtype=float)
    mean = _nanmean(table, axis=0)
    finite = np.isfinite(table).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        std = np.nanstd(table, axis=0, ddof=1)
    std = np.where(finite > 1, std, np.nan)
    c = confusion_matrix(y_true, y_pred, n_classes)
    if units is not None and len(units) != y_true.size:
        raise ValueError(f"summarize: {len(units)} units for {y_true.size} pooled test predictions")
    clustered = not all_distinct(units)
    inverse = np.unique(np.asarray(units), return_inverse=True)[1] if clustered else None
    ci: dict[str, list[float]] = {}
    if clustered:
        c_units = _unit_confusion(inverse, y_true, y_pred, n_classes)
        wilson = {
            k: clustered_wilson(*v) for k, v in unit_wilson_counts(c_units, positive_index).items()
        }
        boot = cluster_bootstrap(
            inverse, c_units, y_true, score, n_classes, positive_index, seed, n_boot
        )
    else:
        wilson = {k: wilson_interval(*v) for k, v in wilson_counts(c, positive_index).items()}
        boot = _bootstrap(y_true, y_pred, score, n_classes, positive_index, seed, n_boot)
    for key in keys:
        lo, hi = wilson[key] if key in wilson else percentile_interval(boot[key])
        ci[key] = [lo, hi]
    n_units = int(inverse.max() + 1) if clustered and inverse.size else int(y_true.size)
    return {
        "pooled": pooled,
        "mean": {k: float(v) for k, v in zip(keys, mean, strict=True)},
        "std": {k: float(v) for k, v in zip(keys, std, strict=True)},
        "ci": ci,
        "unit": (unit or "unit") if units is not None else UNIT_SAMPLE,
        "n_units": n_units,
        "n_predictions": int(y_true.size),
        "per_class": per_class_table(c),
        "confusion": c.tolist(),
    }


def _unit_confusion(
    inverse: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, n_classes: int
) -> np.ndarray:
    """(K, k, k) confusion matrix of each unit's predictions."""
    k_units = int(inverse.max()) + 1 if inverse.size else 0
    code = (inverse * n_classes + y_true) * n_classes + y_pred
    flat = np.bincount(code, minlength=k_units * n_classes * n_classes)
    return flat.reshape(k_units, n_classes, n_classes)


def _bootstrap(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    score: np.ndarray | None,
    n_classes: int,
    positive_index: int | None,
    seed: int,
    n_boot: int,
) -> dict[str, np.ndarray]:
    """Every metric on ``n_boot`` seeded resamples of the pooled predictions."""
    n = y_true.size
    if n == 0 or n_boot <= 0:
        return {}
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {}
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, (min(chunk, n_boot - start), n))
        c = _batched_confusion(y_true[idx], y_pred[idx], n_classes)
        values = metrics_from_confusion(c, positive_index)
        if score is None:
            values["roc_auc"] = np.full(idx.shape[0], np.nan)
        elif positive_index is not None and score.ndim == 1:
            values["roc_auc"] = _binary_auc(y_true[idx] == positive_index, score[idx])
        else:
            values["roc_auc"] = np.array(
                [
                    roc_auc(y_true[i], score[i], n_classes=n_classes, positive_index=None)
                    for i in idx
                ]
            )
        for key, v in values.items():
            out.setdefault(key, []).append(np.asarray(v, dtype=float))
    return {key: np.concatenate(v) for key, v in out.items()}


def weighted_auc(positive: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC (ties count half) of one labelling and score under (B, n) sample weights.

    With unit weights this is :func:`_binary_auc`; a bootstrap over units gives each
    prediction its unit's draw count as weight.
    """
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(np.asarray(score, dtype=float), kind="stable")
    s, pos = np.asarray(score, dtype=float)[order], positive[order]
    w = np.atleast_2d(weights)[:, order].astype(float)
    new_level = np.r_[True, s[1:] != s[:-1]]
    level = np.cumsum(new_level) - 1
    first = np.flatnonzero(new_level)
    last = np.r_[first[1:], s.size]
    w_neg = np.where(pos, 0.0, w)
    cum = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(w_neg, axis=1)], axis=1)
    below = cum[:, first[level]]
    tied = cum[:, last[level]] - below
    w_pos = np.where(pos, w, 0.0)
    u = np.sum(w_pos * (below + 0.5 * tied), axis=1)
    return _div(u, w_pos.sum(axis=1) * w_neg.sum(axis=1))


def cluster_bootstrap(
    inverse: np.ndarray,
    c_units: np.ndarray,
    y_true: np.ndarray,
    score: np.ndarray | None,
    n_classes: int,
    positive_index: int | None,
    seed: int,
    n_boot: int,
) -> dict[str, np.ndarray]:
    """Every metric on ``n_boot`` seeded resamples of *units* (all of a unit's predictions).

    ``inverse[i]`` is the unit index of prediction ``i``; ``c_units`` the (K, k, k)
    per-unit confusion matrices. A resample is a draw count per unit, so its
    confusion matrix is ``counts @ c_units`` and its AUC a weighted one.
    """
    k_units = c_units.shape[0]
    if k_units == 0 or n_boot <= 0:
        return {}
    rng = np.random.default_rng(seed)
    flat_units = c_units.reshape(k_units, -1).astype(float)
    out: dict[str, list[np.ndarray]] = {}
    chunk = max(1, 2_000_000 // max(y_true.size, k_units))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        draws = rng.integers(0, k_units, (b, k_units))
        counts = np.bincount(
            (np.arange(b)[:, None] * k_units + draws).ravel(), minlength=b * k_units
        ).reshape(b, k_units)
        c = (counts @ flat_units).reshape(b, n_classes, n_classes)
        values = metrics_from_confusion(c, positive_index)
        weights = counts[:, inverse]
        if score is None:
            values["roc_auc"] = np.full(b, np.nan)
        elif positive_index is not None and score.ndim == 1:
            values["roc_auc"] = weighted_auc(y_true == positive_index, score, weights)
        elif score.ndim == 2 and score.shape[1] == n_classes:
            per_class = np.stack(
                [weighted_auc(y_true == k, score[:, k], weights) for k in range(n_classes)], -1
            )
            values["roc_auc"] = _nanmean(per_class, axis=-1)
        else:
            values["roc_auc"] = np.full(b, np.nan)
        for key, v in values.items():
            out.setdefault(key, []).append(np.asarray(v, dtype=float))
    return {key: np.concatenate(v) for key, v in out.items()}
