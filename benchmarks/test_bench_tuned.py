"""Nested CV cost: one shared Gram matrix for the whole grid vs GridSearchCV inside cross_validate.

Run: ``python -m pytest benchmarks/test_bench_tuned.py -s`` (sizes: ``LEUKOBENCH_BENCH_N``,
``LEUKOBENCH_BENCH_D``; defaults 1500 x 1024). Features are seeded and shaped like CNN
features (benchmarks/test_bench_model1.py ``fc7_like``), groups of 3 copies; outer grouped
5-fold, inner grouped 3-fold, grids C in {0.1, 1, 10} for SVM (Gaussian) and SVM (cubic).

* ``nested``: :func:`bench.protocols.tuned.nested_cross_validate` - every candidate on every
  inner and outer fold in one ``cross_validate`` call on one Gram matrix.
* ``GridSearchCV(SVC)``: per outer fold, ``cross_validate`` of a ``GridSearchCV`` of the
  plain scikit-learn SVC over the same inner folds (refit on the outer training part).
* ``GridSearchCV(KernelSVC)``: the same with the builtin BLAS-kernel SVC (no sharing
  between fits).

The choices and outer predictions of all three must be identical.
"""

from __future__ import annotations

import os
import time

import numpy as np
from sklearn.model_selection import GridSearchCV

from bench.crossval import cross_validate
from bench.data.splits import make_folds
from bench.protocols.tuned import expand_grid, inner_splits, nested_cross_validate
from bench.registry import get_registry
from plugins.sklearn_classifiers import reference_estimator

N = int(os.environ.get("LEUKOBENCH_BENCH_N", 1500))
D = int(os.environ.get("LEUKOBENCH_BENCH_D", 1024))
GRID = {"svm-gaussian": {"C": [0.1, 1, 10]}, "svm-cubic": {"C": [0.1, 1, 10]}}


def fc7_like(n: int, d: int, copies: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_src = n // copies
    y_src = rng.integers(0, 2, n_src)
    z_src = rng.normal(size=(n_src, 32)) + 0.35 * y_src[:, None] * rng.normal(size=32)
    z = np.repeat(z_src, copies, axis=0) + 0.3 * rng.normal(size=(n_src * copies, 32))
    w = rng.normal(size=(32, d)) / np.sqrt(32)
    x = np.maximum(z @ w + 0.8 * rng.normal(size=(len(z), d)) - 0.5, 0)
    return (
        x.astype(np.float32),
        np.repeat(y_src, copies),
        np.repeat(np.arange(n_src), copies).astype(str),
    )


_BEST: list[int] = []


class _RecordingSearch(GridSearchCV):
    """GridSearchCV that notes its choice (cross_validate fits a clone of it)."""

    def fit(self, X, y=None, **params):
        super().fit(X, y, **params)
        _BEST.append(int(self.best_index_))
        return self


class _Searches:
    """A registry view whose classifier ``name`` is a GridSearchCV over fixed inner folds."""

    def __init__(self, make):
        self.make = make

    def build_classifier(self, name, **options):
        return self.make(name)


def gridsearch_in_cross_validate(X, y, outer, inner, builtin: bool):
    registry = get_registry()
    chosen, preds = {n: [] for n in GRID}, {n: [] for n in GRID}
    for i, (train, test) in enumerate(outer):
        pos = {v: k for k, v in enumerate(train)}
        cv = [
            (np.array([pos[a] for a in tr]), np.array([pos[b] for b in te])) for tr, te in inner[i]
        ]

        def make(name, cv=cv):
            est = registry.build_classifier(name)
            return _RecordingSearch(est if builtin else reference_estimator(est), GRID[name], cv=cv)

        del _BEST[:]
        out = cross_validate(
            X,
            y,
            [(train, test)],
            {n: {} for n in GRID},
            positive_index=1,
            registry=_Searches(make),
            n_jobs=1,
        )
        assert len(_BEST) == len(GRID), (builtin, i, _BEST)
        for n, best in zip(GRID, _BEST, strict=True):  # n_jobs=1: fitted in GRID order
            preds[n].append(out[n][0].y_pred)
            chosen[n].append(best)
    return chosen, preds


def test_nested_cv_shared_gram_vs_gridsearchcv():
    X, y, g = fc7_like(N, D)
    outer = make_folds(y, g, folds=5, seed=0)
    inner = inner_splits(outer, y, g, folds=3, seed=0)
    grid = expand_grid(GRID, {}, "grid")
    get_registry().build_classifier("svm-gaussian")  # load the plugins before timing
    t0 = time.perf_counter()
    nested = nested_cross_validate(X, y, outer, inner, grid, positive_index=1, n_jobs=1)
    t_nested = time.perf_counter() - t0
    times = {"nested (one Gram matrix)": t_nested}
    for builtin, label in ((False, "GridSearchCV(SVC)"), (True, "GridSearchCV(KernelSVC)")):
        t0 = time.perf_counter()
        chosen, preds = gridsearch_in_cross_validate(X, y, outer, inner, builtin)
        times[label] = time.perf_counter() - t0
        for n in GRID:
            assert chosen[n] == nested[n].chosen, (label, n)
            for i in range(len(outer)):
                assert np.array_equal(preds[n][i], nested[n].outer[i].y_pred), (label, n, i)
    fits = sum(len(p) for p in grid.values()) * (len(outer) + sum(len(f) for f in inner))
    print(f"\nnested CV, {N} x {D}, outer 5 x inner 3, {fits} candidate fits (n_jobs=1):")
    for label, t in times.items():
        print(f"  {label:26s} {t:7.1f} s   x{t / t_nested:.1f}")
