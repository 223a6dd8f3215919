"""Metrics with confidence intervals over independent units (a cluster bootstrap).

Test predictions are not independent when several come from one patient or from
augmented copies of one image: resampling single predictions then understates
the uncertainty. :func:`unit_summary` resamples whole *units* (the split groups:
patients where the dataset knows them, else source images) with replacement,
rebuilds the confusion matrix of each replicate from per-unit confusion matrices
(one vectorised pass) and reports the central 95% range of every metric. ROC-AUC
(binary only) is computed on the same replicates with each prediction weighted
by how often its unit was drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.metrics import compute_metrics, confusion_matrix, metrics_from_confusion
from bench.stats import percentile_interval

__all__ = ["unit_replicates", "unit_summary", "weighted_binary_auc"]


def _unit_codes(units: Sequence[Any] | np.ndarray) -> tuple[np.ndarray, int]:
    _, codes = np.unique(np.asarray(units, dtype=object).astype(str), return_inverse=True)
    return codes.astype(np.int64), int(codes.max() + 1) if len(codes) else 0


def weighted_binary_auc(positive: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC of one score vector under ``(B, n)`` sample weights (ties count half).

    ``positive`` marks the positive samples; each row of ``weights`` is one
    replicate (how often each sample was drawn). ``nan`` where a replicate has
    no positive or no negative weight.
    """
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=float)
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    order = np.argsort(score, kind="stable")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    w = weights[:, order]
    pos = np.add.reduceat(np.where(positive[order], w, 0.0), starts, axis=1)
    neg = np.add.reduceat(np.where(positive[order], 0.0, w), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each tie block
    wins = np.sum(pos * (below + 0.5 * neg), axis=1)
    total = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, wins / np.where(total > 0, total, 1.0), np.nan)


def unit_replicates(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    score: np.ndarray | None,
    units: Sequence[Any] | np.ndarray,
    *,
    n_classes: int,
    positive_index: int | None,
    seed: int = 0,
    n_boot: int = 1000,
) -> dict[str, np.ndarray]:
    """Every metric on ``n_boot`` seeded resamples of the units (arrays of length ``n_boot``)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    codes, n_units = _unit_codes(units)
    if n_units == 0 or n_boot <= 0:
        return {}
    per_unit = np.zeros((n_units, n_classes, n_classes), dtype=np.int64)
    np.add.at(per_unit, (codes, y_true, y_pred), 1)
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {}
    chunk = max(1, 4_000_000 // max(n_units, len(y_true)))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        draws = rng.integers(0, n_units, (b, n_units))
        counts = np.zeros((b, n_units))
        np.add.at(counts, (np.repeat(np.arange(b), n_units), draws.ravel()), 1.0)
        conf = np.einsum("bu,uij->bij", counts, per_unit)
        values = metrics_from_confusion(conf, positive_index)
        if score is not None and positive_index is not None and np.ndim(score) == 1:
            values["roc_auc"] = weighted_binary_auc(
                y_true == positive_index, np.asarray(score, dtype=float), counts[:, codes]
            )
        else:
            values["roc_auc"] = np.full(b, np.nan)
        for key, v in values.items():
            out.setdefault(key, []).append(np.asarray(v, dtype=float))
    return {key: np.concatenate(v) for key, v in out.items()}


def unit_summary(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    score: Sequence[float] | np.ndarray | None,
    units: Sequence[Any] | np.ndarray,
    *,
    n_classes: int,
    positive_index: int | None,
    seed: int = 0,
    n_boot: int = 1000,
    conf: float = 0.95,
) -> dict[str, Any]:
    """Point metrics of all predictions with cluster-bootstrap intervals over ``units``.

    Returns ``{"pooled": {metric: value}, "ci": {metric: [lo, hi]}, "n": samples,
    "n_units": units, "confusion": [[...]], "ci_method": "cluster bootstrap ..."}``.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    s = None if score is None else np.asarray(score, dtype=float)
    pooled = compute_metrics(y_true, y_pred, s, n_classes=n_classes, positive_index=positive_index)
    reps = unit_replicates(
        y_true,
        y_pred,
        s,
        units,
        n_classes=n_classes,
        positive_index=positive_index,
        seed=seed,
        n_boot=n_boot,
    )
    ci = {}
    for key in pooled:
        lo, hi = percentile_interval(reps[key], conf) if key in reps else (math.nan, math.nan)
        ci[key] = [lo, hi]
    _, n_units = _unit_codes(units)
    return {
        "pooled": pooled,
        "ci": ci,
        "n": int(len(y_true)),
        "n_units": n_units,
        "confusion": confusion_matrix(y_true, y_pred, n_classes).tolist(),
        "ci_method": f"cluster bootstrap over {n_units} units, {n_boot} replicates, seed {seed}",
    }
