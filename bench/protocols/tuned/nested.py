"""Nested cross-validation on a feature matrix, with one Gram matrix for the whole grid.

For each outer grouped fold, an inner grouped k-fold of the outer *training* part
scores every candidate of the grid; the candidate with the best mean inner score
(ties: the first, as ``GridSearchCV``) is the one whose outer-fold predictions
count. The outer test fold is never seen while choosing.

How the shared products are reused: every inner fold of every outer fold, and the
outer folds themselves, index rows of the same feature matrix, so they are all
passed as folds of **one** :func:`bench.crossval.cross_validate` call, with every
candidate as a classifier of that call (each named by its own alias through a
small registry adapter). ``cross_validate`` computes the Gram matrix ``X X^T``
once for the call and gives each (fold, candidate) its slices; kernel estimators
(SVMs, 1-NN) then only solve their small per-fold problems, and per-fold
standardisation is one product per fold shared by every candidate. Estimators
without a fast path (logistic regression, ...) are fitted the ordinary way. Every
candidate is also fitted on the outer folds: that costs about one inner fold's
worth of extra fits and shows how optimistic "choosing on the test folds" would
have been.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.crossval import FoldPrediction, cross_validate
from bench.data.splits import make_folds
from bench.metrics import compute_metrics
from bench.protocols.tuned.grid import GridPoint

__all__ = [
    "AliasRegistry",
    "NestedResult",
    "inner_splits",
    "nested_cross_validate",
    "select",
]

Split = tuple[np.ndarray, np.ndarray]


def inner_splits(
    outer: Sequence[Split], labels: np.ndarray, groups: np.ndarray, *, folds: int, seed: int
) -> list[list[Split]]:
    """Grouped stratified ``folds``-fold splits of each outer training part (global indices)."""
    labels = np.asarray(labels)
    groups = np.asarray(groups, dtype=object)
    out = []
    for i, (train, _) in enumerate(outer):
        train = np.asarray(train, dtype=np.int64)
        local = make_folds(labels[train], groups[train], folds=folds, seed=seed + 1000 * (i + 1))
        out.append([(train[tr], train[te]) for tr, te in local])
    return out


class AliasRegistry:
    """A registry view where each candidate's alias builds its classifier with its options."""

    def __init__(self, registry: Any, points: Sequence[GridPoint]) -> None:
        self.registry = registry
        self.by_alias = {p.alias: p for p in points}

    def build_classifier(self, name: str, **options: Any) -> Any:
        point = self.by_alias.get(name)
        if point is None:
            return self.registry.build_classifier(name, **options)
        return self.registry.build_classifier(point.classifier, **options)

    def classifier(self, name: str) -> Any:
        point = self.by_alias.get(name)
        return self.registry.classifier(point.classifier if point else name)


def _fold_score(p: FoldPrediction, metric: str, n_classes: int, positive: int | None) -> float:
    if metric == "accuracy":
        return float(np.mean(np.asarray(p.y_true) == np.asarray(p.y_pred)))
    m = compute_metrics(p.y_true, p.y_pred, p.score, n_classes=n_classes, positive_index=positive)
    return float(m[metric])


def select(inner_means: Sequence[float]) -> int:
    """Index of the best mean inner score; the first on ties; nan counts as worst."""
    values = np.asarray(inner_means, dtype=float)
    values = np.where(np.isfinite(values), values, -np.inf)
    return int(np.argmax(values))


@dataclass
class NestedResult:
    """Nested CV of one classifier's grid.

    ``inner[i][c]`` is candidate ``c``'s mean inner score on outer fold ``i``;
    ``chosen[i]`` the candidate index chosen there; ``outer`` the chosen
    candidates' outer-fold predictions (the honest estimate); ``by_candidate[c]``
    every outer fold's predictions of candidate ``c`` (for the optimism figure only).
    """

    points: list[GridPoint]
    inner: list[list[float]]
    chosen: list[int]
    outer: list[FoldPrediction]
    by_candidate: list[list[FoldPrediction]] = field(default_factory=list)
    from_cache: bool = False


def all_folds(outer: Sequence[Split], inner: Sequence[Sequence[Split]]) -> list[Split]:
    """The folds of the one ``cross_validate`` call: inner folds (outer fold by outer fold), then outer."""
    return [s for folds in inner for s in folds] + list(outer)


def nested_cross_validate(
    X: np.ndarray,
    y: np.ndarray,
    outer: Sequence[Split],
    inner: Sequence[Sequence[Split]],
    grid: Mapping[str, list[GridPoint]],
    *,
    positive_index: int | None,
    metric: str = "accuracy",
    n_jobs: int = 2,
    registry: Any = None,
    cached: Callable[[GridPoint], list[FoldPrediction] | None] | None = None,
    store: Callable[[GridPoint, list[FoldPrediction]], None] | None = None,
) -> dict[str, NestedResult]:
    """Nested CV of every classifier's grid on one shared Gram matrix (see the module docstring).

    ``cached(point)`` may return a candidate's predictions on :func:`all_folds`
    from a cache (then it is not fitted); ``store(point, preds)`` is called for
    each fitted candidate.
    """
    if registry is None:
        from bench.registry import get_registry

        registry = get_registry()
    y = np.asarray(y, dtype=np.int64)
    folds = all_folds(outer, inner)
    n_classes = int(max(y.max() + 1, 2))
    points = [p for pts in grid.values() for p in pts]
    preds: dict[str, list[FoldPrediction]] = {}
    hits: set[str] = set()
    for p in points:
        hit = cached(p) if cached is not None else None
        if hit is not None and len(hit) == len(folds):
            preds[p.alias] = hit
            hits.add(p.alias)
    todo = {p.alias: p.options for p in points if p.alias not in preds}
    if todo:
        fitted = cross_validate(
            X,
            y,
            folds,
            todo,
            positive_index=positive_index,
            n_jobs=n_jobs,
            registry=AliasRegistry(registry, points),
        )
        for p in points:
            if p.alias in fitted:
                preds[p.alias] = fitted[p.alias]
                if store is not None:
                    store(p, fitted[p.alias])
    out = {}
    n_outer = len(outer)
    for name, pts in grid.items():
        inner_means: list[list[float]] = []
        chosen, outer_preds = [], []
        start = 0
        for i in range(n_outer):
            k = len(inner[i])
            means = [
                float(
                    np.mean(
                        [
                            _fold_score(
                                preds[p.alias][start + j], metric, n_classes, positive_index
                            )
                            for j in range(k)
                        ]
                    )
                )
                for p in pts
            ]
            start += k
            best = select(means)
            inner_means.append(means)
            chosen.append(best)
            outer_preds.append(_renumber(preds[pts[best].alias][start_outer(inner) + i], i))
        by_candidate = [
            [_renumber(preds[p.alias][start_outer(inner) + i], i) for i in range(n_outer)]
            for p in pts
        ]
        out[name] = NestedResult(
            list(pts),
            inner_means,
            chosen,
            outer_preds,
            by_candidate,
            from_cache=all(p.alias in hits for p in pts),
        )
    return out


def start_outer(inner: Sequence[Sequence[Split]]) -> int:
    """Position of the first outer fold in :func:`all_folds`."""
    return sum(len(f) for f in inner)


def _renumber(p: FoldPrediction, fold: int) -> FoldPrediction:
    return FoldPrediction(fold, p.test_index, p.y_true, p.y_pred, p.score, p.fit_s)
