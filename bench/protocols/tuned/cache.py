"""Nested CV through the run's prediction cache: each candidate's predictions on every
(inner and outer) fold are one cache entry, keyed exactly like a ``features`` table's fits
(features, labels, folds, classifier, options, positive class, code versions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.protocols.tuned.grid import GridPoint
from bench.protocols.tuned.nested import NestedResult, all_folds, nested_cross_validate

if TYPE_CHECKING:
    from bench.protocols.context import RunContext


def cached_nested(
    ctx: RunContext,
    X: np.ndarray,
    y: np.ndarray,
    outer: Sequence[Any],
    inner: Sequence[Sequence[Any]],
    grid: Mapping[str, list[GridPoint]],
    metric: str,
) -> dict[str, NestedResult]:
    """:func:`~bench.protocols.tuned.nested.nested_cross_validate` with cached candidates."""
    from bench.code_digest import classifier_code
    from bench.prediction_cache import data_digest, prediction_key

    positive = ctx.data.imageset.positive_index
    cache = ctx.prediction_cache
    cached = store = None
    if cache is not None:
        digest = data_digest(X, y, all_folds(outer, inner))

        def key(p: GridPoint) -> str:
            code = classifier_code(ctx.registry.classifier(p.classifier).factory)
            return prediction_key(digest, p.classifier, p.options, positive, code)

        def cached(p: GridPoint) -> Any:
            return cache.get(key(p))

        def store(p: GridPoint, preds: Any) -> None:
            cache.put(key(p), preds)

    results = nested_cross_validate(
        X,
        y,
        outer,
        inner,
        grid,
        positive_index=positive,
        metric=metric,
        n_jobs=ctx.suite.config["run"]["n_jobs"],
        registry=ctx.registry,
        cached=cached,
        store=store,
    )
    hits = [n for n, r in results.items() if r.from_cache]
    if hits:
        ctx.console.print(f"[dim]nested-CV predictions from cache: {', '.join(sorted(hits))}[/dim]")
    return results
