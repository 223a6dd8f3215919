"""Model 1 speed: the paper's six classifiers x 10 folds, fast path vs plain scikit-learn.

Run: ``python -m pytest benchmarks/test_bench_model1.py --benchmark-enable -s``

Features are random but shaped like AlexNet fc7 features of
``aria_all_pbs_binary`` (3,216 x 4,096, non-negative, a learnable class signal,
groups of 6 augmented copies), seeded. The naive baseline is
``sklearn.model_selection.cross_validate`` of the equivalent plain estimators
(``reference()``), run once (5-10 minutes); set ``LEUKOBENCH_BENCH_NAIVE=0`` to
skip it. Predictions of both must be identical on every fold.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_validate as sk_cross_validate

from bench.crossval import cross_validate
from bench.registry import get_registry
from plugins.sklearn_classifiers import reference_estimator

PAPER_SIX = ["dt", "lda", "svm-linear", "svm-gaussian", "svm-cubic", "knn1"]
N, D, COPIES, FOLDS = 3216, 4096, 6, 10


def fc7_like(n: int = N, d: int = D, copies: int = COPIES, seed: int = 0):
    """Seeded (X, y, groups): ReLU of a low-rank latent code with a class shift."""
    rng = np.random.default_rng(seed)
    n_src = n // copies
    y_src = rng.integers(0, 2, n_src)
    z_src = rng.normal(size=(n_src, 32)) + 0.35 * y_src[:, None] * rng.normal(size=32)
    z = np.repeat(z_src, copies, axis=0) + 0.3 * rng.normal(size=(n_src * copies, 32))
    w = rng.normal(size=(32, d)) / np.sqrt(32)
    x = np.maximum(z @ w + 0.8 * rng.normal(size=(len(z), d)) - 0.5, 0)
    return x.astype(np.float32), np.repeat(y_src, copies), np.repeat(np.arange(n_src), copies)


def grouped_folds(groups: np.ndarray, k: int = FOLDS, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.unique(groups))
    parts = np.array_split(ids, k)
    out = []
    for part in parts:
        test = np.flatnonzero(np.isin(groups, part))
        out.append((np.setdiff1d(np.arange(len(groups)), test), test))
    return out


@pytest.fixture(scope="module")
def data():
    X, y, groups = fc7_like()
    return X, y, grouped_folds(groups)


def naive(X, y, folds):
    """Plain scikit-learn cross_validate of each reference estimator: timings and predictions."""
    registry = get_registry()
    times, preds = {}, {}
    for name in PAPER_SIX:
        ref = reference_estimator(registry.build_classifier(name))
        t0 = time.perf_counter()
        res = sk_cross_validate(ref, X, y, cv=folds, return_estimator=True)
        times[name] = time.perf_counter() - t0
        preds[name] = [
            est.predict(X[te]) for est, (_, te) in zip(res["estimator"], folds, strict=True)
        ]
    return times, preds


def test_model1_six_classifiers_ten_folds(benchmark, data):
    X, y, folds = data
    classifiers = {name: {} for name in PAPER_SIX}
    result = benchmark.pedantic(
        cross_validate,
        args=(X, y, folds, classifiers),
        kwargs={"positive_index": 1, "n_jobs": 2},
        rounds=1,
        iterations=1,
    )
    fast_s = benchmark.stats.stats.mean
    per_clf = {n: sum(f.fit_s for f in result[n]) for n in PAPER_SIX}
    print(f"\nfast path: {fast_s:.1f} s wall; per-classifier busy time:", per_clf)
    for name in PAPER_SIX:
        acc = np.mean([np.mean(f.y_pred == f.y_true) for f in result[name]])
        print(f"  {name}: mean fold accuracy {acc:.3f}")
    if os.environ.get("LEUKOBENCH_BENCH_NAIVE", "1") == "0":
        pytest.skip("naive baseline skipped (LEUKOBENCH_BENCH_NAIVE=0)")
    times, preds = naive(X, y, folds)
    total = sum(times.values())
    print("naive sklearn cross_validate:", {k: round(v, 1) for k, v in times.items()})
    print(f"naive total {total:.1f} s; speed-up {total / fast_s:.1f}x")
    benchmark.extra_info.update({"naive_s": total, "fast_s": fast_s, "speedup": total / fast_s})
    for name in PAPER_SIX:
        for fp, p in zip(result[name], preds[name], strict=True):
            assert np.array_equal(fp.y_pred, p), f"{name} fold {fp.fold}: predictions differ"
    assert total / fast_s >= 20


def test_reference_is_cloneable(data):
    """The baseline estimators are plain scikit-learn ones (sanity for the comparison above)."""
    registry = get_registry()
    for name in PAPER_SIX:
        clone(reference_estimator(registry.build_classifier(name)))
