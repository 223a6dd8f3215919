"""Grouped cross-validation of one classifier, and metrics with CIs over independent units.

Every audit test asks one question -- "can this table of numbers predict that
label?" -- and answers it the same way: grouped stratified k-fold
(:func:`bench.data.splits.make_folds`), one registry classifier through
:func:`bench.crossval.cross_validate`, every row predicted once, then balanced
accuracy and AUC with 95% percentile intervals from a **cluster bootstrap over
groups** (groups = patients where known, else source images): the independent
units, so correlated rows (augmented copies, images of one patient) do not make
the intervals too narrow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.crossval import cross_validate
from bench.data.splits import make_folds
from bench.stats import percentile_interval

N_BOOT = 1000


@dataclass
class Pooled:
    """Out-of-fold predictions of every row (``score``: positive score or (n, k) probabilities)."""

    y_true: np.ndarray
    y_pred: np.ndarray
    score: np.ndarray | None
    groups: np.ndarray
    n_classes: int


@dataclass
class Estimate:
    """A metric, its 95% cluster-bootstrap CI, and what it was measured on."""

    value: float
    low: float
    high: float

    def to_json(self) -> dict[str, float | None]:
        return {k: (None if math.isnan(v) else round(v, 4)) for k, v in vars(self).items()}


@dataclass
class TestResult:
    """Balanced accuracy and AUC of one grouped-CV test."""

    balanced_accuracy: Estimate
    auc: Estimate
    n_rows: int
    n_units: int
    folds: int
    split: str
    classifier: str
    chance: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def strength(self) -> float:
        """The CI's lower bound of the AUC (or of the balanced accuracy rescaled to AUC's range)."""
        if not math.isnan(self.auc.low):
            return self.auc.low
        lo = self.balanced_accuracy.low
        return 0.5 + 0.5 * (lo - self.chance) / (1 - self.chance) if self.chance < 1 else math.nan

    def describe(self) -> str:
        """``AUC 1.00 [1.00, 1.00], balanced accuracy 100.0% [..] (grouped 5-fold, 696 units)``."""
        a, b = self.auc, self.balanced_accuracy
        auc = "AUC n/a" if math.isnan(a.value) else f"AUC {a.value:.2f} [{a.low:.2f}, {a.high:.2f}]"
        return (
            f"{auc}, balanced accuracy {100 * b.value:.1f}% [{100 * b.low:.1f}, {100 * b.high:.1f}] "
            f"({self.split} {self.folds}-fold, {self.classifier}, {self.n_units} independent units)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "balanced_accuracy": self.balanced_accuracy.to_json(),
            "auc": self.auc.to_json(),
            "n_rows": self.n_rows,
            "n_units": self.n_units,
            "folds": self.folds,
            "split": self.split,
            "classifier": self.classifier,
            "chance_balanced_accuracy": round(self.chance, 4),
            **self.extra,
        }


def balanced_accuracy(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, weights: np.ndarray | None = None
) -> float:
    """Mean recall over the classes present in ``y_true`` (rows weighted by ``weights``)."""
    w = np.ones(len(y_true)) if weights is None else np.asarray(weights, dtype=np.float64)
    total = np.bincount(y_true, weights=w, minlength=n_classes)
    hits = np.bincount(y_true, weights=w * (y_true == y_pred), minlength=n_classes)
    present = total > 0
    return float(np.mean(hits[present] / total[present])) if present.sum() > 1 else math.nan


class AucRanker:
    """Binary AUC of fixed ``(y, score)`` under any row weights, in O(n) per call.

    The scores are sorted once; a call sums, per tie block, the positive weight times
    the negative weight below it (ties count half) -- the Mann-Whitney statistic of a
    bootstrap resample whose row counts are ``weights``.
    """

    def __init__(self, y: np.ndarray, score: np.ndarray) -> None:
        order = np.argsort(score, kind="stable")
        s = np.asarray(score, dtype=np.float64)[order]
        self.order = order
        self.pos = (np.asarray(y)[order] == 1).astype(np.float64)
        self.block = np.concatenate([[0], np.cumsum(s[1:] != s[:-1])])
        self.n_blocks = int(self.block[-1]) + 1 if len(s) else 0

    def __call__(self, weights: np.ndarray | None = None) -> float:
        w = np.ones(len(self.order)) if weights is None else np.asarray(weights)[self.order]
        pos_w = np.bincount(self.block, weights=w * self.pos, minlength=self.n_blocks)
        neg_w = np.bincount(self.block, weights=w * (1 - self.pos), minlength=self.n_blocks)
        n_pos, n_neg = pos_w.sum(), neg_w.sum()
        if n_pos == 0 or n_neg == 0:
            return math.nan
        below = np.cumsum(neg_w) - neg_w
        return float((pos_w * (below + 0.5 * neg_w)).sum() / (n_pos * n_neg))


def binary_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUC of ``score`` for ``y == 1`` (ties count half); nan with one class."""
    return AucRanker(np.asarray(y), np.asarray(score))()


def auc_function(
    y_true: np.ndarray, score: np.ndarray | None, n_classes: int
) -> Callable[[np.ndarray | None], float]:
    """``weights -> AUC``: binary, or the macro one-vs-rest AUC of ``(n, k)`` probabilities."""
    if score is None:
        return lambda w=None: math.nan
    if score.ndim == 1:
        return AucRanker((y_true == 1).astype(int), score)
    rankers = [AucRanker((y_true == c).astype(int), score[:, c]) for c in range(n_classes)]

    def macro(w: np.ndarray | None = None) -> float:
        values = [v for v in (r(w) for r in rankers) if not math.isnan(v)]
        return float(np.mean(values)) if len(values) > 1 else math.nan

    return macro


def cluster_weights(groups: np.ndarray, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """``n_boot`` row weights of a cluster bootstrap: groups drawn with replacement, every
    row weighted by how often its group was drawn (whole groups move together)."""
    _, inv = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_groups = int(inv.max()) + 1 if len(inv) else 0
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        drawn = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
        yield drawn[inv].astype(np.float64)


def estimates(pooled: Pooled, *, n_boot: int = N_BOOT, seed: int = 0) -> tuple[Estimate, Estimate]:
    """(balanced accuracy, AUC) with cluster-bootstrap CIs."""
    p = pooled
    au = auc_function(p.y_true, p.score, p.n_classes)

    def ba(w: np.ndarray | None) -> float:
        return balanced_accuracy(p.y_true, p.y_pred, p.n_classes, w)

    values = [ba(None), au(None)]
    reps = np.array([[ba(w), au(w)] for w in cluster_weights(p.groups, n_boot, seed)])
    out = []
    for c, value in enumerate(values):
        low, high = (math.nan, math.nan) if math.isnan(value) else percentile_interval(reps[:, c])
        out.append(Estimate(value, low, high))
    return out[0], out[1]


def usable_folds(labels: np.ndarray, groups: Sequence[str], folds: int) -> int:
    """``folds``, lowered to the fewest groups of any class (0 when a class has < 2 groups)."""
    g = np.asarray(groups, dtype=object)
    per_class = [len(set(g[labels == c])) for c in np.unique(labels)]
    if len(per_class) < 2:
        return 0
    k = min(folds, min(per_class))
    return k if k >= 2 else 0


def pooled_predictions(
    X: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str],
    *,
    classifier: str,
    options: dict[str, Any] | None = None,
    folds: int = 5,
    seed: int = 0,
    split: str = "grouped-kfold",
    n_classes: int | None = None,
) -> Pooled:
    """Out-of-fold predictions of ``classifier`` for every row under ``split``."""
    y = np.asarray(y, dtype=np.int64)
    k = int(n_classes or y.max() + 1)
    fold_list = make_folds(y, groups, folds=folds, seed=seed, kind=split)
    positive = 1 if k == 2 else None
    result = cross_validate(
        X, y, fold_list, {classifier: dict(options or {})}, positive_index=positive
    )[classifier]
    y_pred = np.empty(len(y), dtype=np.int64)
    score: np.ndarray | None = None
    for fp in result:
        y_pred[fp.test_index] = fp.y_pred
        if fp.score is not None:
            if score is None:
                score = np.full((len(y), *fp.score.shape[1:]), np.nan)
            score[fp.test_index] = fp.score
    return Pooled(y, y_pred, score, np.asarray(groups, dtype=str), k)


def grouped_test(
    X: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str],
    *,
    classifier: str,
    options: dict[str, Any] | None = None,
    folds: int = 5,
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> TestResult | None:
    """Grouped-CV balanced accuracy and AUC of predicting ``y`` from ``X`` (None: too few groups)."""
    y = np.asarray(y, dtype=np.int64)
    k = usable_folds(y, groups, folds)
    if k == 0:
        return None
    n_classes = int(y.max() + 1)
    pooled = pooled_predictions(
        X, y, groups, classifier=classifier, options=options, folds=k, seed=seed
    )
    ba, au = estimates(pooled, n_boot=n_boot, seed=seed)
    return TestResult(
        balanced_accuracy=ba,
        auc=au,
        n_rows=len(y),
        n_units=len(set(groups)),
        folds=k,
        split="grouped",
        classifier=classifier,
        chance=1.0 / n_classes,
    )
