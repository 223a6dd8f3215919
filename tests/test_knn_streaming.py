"""1-NN streamed over the Gram matrix's blocks: the shared-Gram path's neighbours, bit for bit."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone
from sklearn.neighbors import KNeighborsClassifier

from bench.crossval import cross_validate
from bench.fold_fastpath import CVContext, FoldView
from bench.memory_budget import MemoryBudget
from plugins.fast_estimators import EuclideanKNN, KernelSVC
from plugins.fast_estimators.nearest import fold_of_rows


def _data(n=2600, d=24, n_folds=5, seed=0):
    """Several 1,024-row blocks, exact duplicate rows (tied distances) across folds."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = np.maximum(rng.normal(size=(n, d)) + 0.5 * y[:, None], 0).astype(np.float32)
    X[rng.integers(0, n, 300)] = X[rng.integers(0, n, 300)]  # ties
    parts = np.array_split(rng.permutation(n), n_folds)
    folds = [(np.setdiff1d(np.arange(n), np.sort(p)), np.sort(p)) for p in parts]
    return X, y, folds


def _run_folds(X, y, folds, estimators):
    ctx = CVContext(X, folds, budget=MemoryBudget(2**32), n_jobs=2, estimators=estimators)
    knn = EuclideanKNN()
    outs = []
    for i, (train, test) in enumerate(folds):
        outs.append(clone(knn).fit_predict_fold(FoldView(ctx, i, train, test), y[train]))
    return ctx, outs


def test_streamed_neighbours_equal_the_shared_gram_path_and_sklearn():
    X, y, folds = _data()
    alone, streamed = _run_folds(X, y, folds, (EuclideanKNN(),))
    assert alone.has_shared("knn1-nearest") and not alone.has_shared("gram")
    with_svm, from_gram = _run_folds(X, y, folds, (EuclideanKNN(), KernelSVC()))
    assert with_svm.has_shared("gram") and not with_svm.has_shared("knn1-nearest")
    for (train, test), a, b in zip(folds, streamed, from_gram, strict=True):
        assert np.array_equal(a.pred, b.pred) and np.array_equal(a.proba, b.proba)
        assert np.array_equal(a.classes, b.classes)
        ref = KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(X[train], y[train])
        assert np.array_equal(a.pred, ref.predict(X[test]))


def test_streaming_needs_a_partition_of_the_rows():
    X, y, folds = _data(n=1200)
    ctx = CVContext(X, folds, budget=MemoryBudget(2**30))
    assert fold_of_rows(ctx) is not None
    holdout = [(folds[0][0][:-50], folds[0][1])]  # some rows in neither side
    ctx = CVContext(X, holdout, budget=MemoryBudget(2**30), estimators=(EuclideanKNN(),))
    assert fold_of_rows(ctx) is None
    train, test = holdout[0]
    out = EuclideanKNN().fit_predict_fold(FoldView(ctx, 0, train, test), y[train])
    assert not ctx.has_shared("knn1-nearest")  # the per-fold products answered
    ref = KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(X[train], y[train])
    assert np.array_equal(out.pred, ref.predict(X[test]))


def test_cross_validate_streams_when_no_svm_holds_the_gram():
    X, y, folds = _data(n=1500, seed=3)
    alone = cross_validate(X, y, folds, {"knn1": {}}, positive_index=1, n_jobs=2)["knn1"]
    both = cross_validate(X, y, folds, {"knn1": {}, "svm-linear": {}}, positive_index=1)["knn1"]
    for a, b in zip(alone, both, strict=True):
        assert np.array_equal(a.y_pred, b.y_pred) and np.array_equal(a.score, b.score)
