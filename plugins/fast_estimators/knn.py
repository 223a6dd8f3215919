"""``EuclideanKNN``: k-nearest neighbours from blocked BLAS distance products."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from bench.fold_fastpath import CVContext, FoldOutput, FoldView
from plugins.fast_estimators.gram import (
    F64,
    as_float64,
    linear_gram,
    shared_sq,
    shared_x64,
    sq_norms,
    squared_distances,
    test_block,
    use_gram,
)
from plugins.fast_estimators.nearest import fold_of_rows, nearest_in_other_folds
from plugins.fast_estimators.products import BLOCK, NumpyProducts, products_for


def gram_held_by_others(context: CVContext) -> bool:
    """Whether an estimator of the run (an SVM) keeps the whole Gram matrix, and it fits."""
    wanted = any(getattr(e, "shares_gram", False) for e in context.estimators)
    return wanted and use_gram(context)


class EuclideanKNN(ClassifierMixin, BaseEstimator):
    """k-nearest neighbours (Euclidean, uniform votes) from BLAS inner products.

    Same predictions as ``KNeighborsClassifier(n_neighbors, algorithm="brute")``
    (after a ``StandardScaler`` when ``standardize=True``), see :meth:`reference`.
    ``random_state`` is accepted for uniformity and unused (1-NN is deterministic).
    Under cross-validation 1-NN streams every fold's neighbours over the Gram
    matrix's blocks (:mod:`.nearest`, O(block^2) memory) unless an SVM of the
    run holds the whole matrix; k > 1 and standardised neighbours read the
    shared Gram matrix, or (when it does not fit the budget) blocked products.
    """

    def __init__(
        self, n_neighbors: int = 1, standardize: bool = False, random_state: int | None = 0
    ) -> None:
        self.n_neighbors = n_neighbors
        self.standardize = standardize
        self.random_state = random_state

    def check_params(self) -> None:
        if not isinstance(self.n_neighbors, int | np.integer) or self.n_neighbors < 1:
            raise ValueError(f"n_neighbors must be an integer >= 1, not {self.n_neighbors!r}")

    def reference(self) -> Any:
        knn = KNeighborsClassifier(n_neighbors=self.n_neighbors, algorithm="brute")
        return make_pipeline(StandardScaler(), knn) if self.standardize else knn

    def fit(self, X: Any, y: Any) -> EuclideanKNN:
        self.check_params()
        X, y = validate_data(self, X, y, dtype=np.float64)
        self.classes_, self.y_fit_ = np.unique(y, return_inverse=True)
        self.scaler_ = StandardScaler().fit(X) if self.standardize else None
        xf = as_float64(self.scaler_.transform(X) if self.scaler_ is not None else X)
        self.X_fit_ = xf
        self.sq_fit_ = sq_norms(xf)
        return self

    def _votes(self, d2: np.ndarray, y_fit: np.ndarray, n_classes: int) -> np.ndarray:
        k = min(self.n_neighbors, d2.shape[1])
        if k == 1:
            nearest = np.argmin(d2, axis=1)[:, None]
        else:
            part = np.argpartition(d2, k - 1, axis=1)[:, :k]
            order = np.lexsort((part, np.take_along_axis(d2, part, axis=1)), axis=1)
            nearest = np.take_along_axis(part, order, axis=1)
        labels = y_fit[nearest]
        proba = np.zeros((d2.shape[0], n_classes))
        rows = np.repeat(np.arange(d2.shape[0]), k)
        np.add.at(proba, (rows, labels.ravel()), 1.0)
        return proba / k

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "X_fit_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        xf = as_float64(self.scaler_.transform(X) if self.scaler_ is not None else X)
        d2 = squared_distances(linear_gram(xf, self.X_fit_), sq_norms(xf), self.sq_fit_)
        return self._votes(d2, self.y_fit_, len(self.classes_))

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # -- the fold fast path (bench.fold_fastpath.FoldFastPath) ---------------------------

    def _streams(self, context: CVContext) -> bool:
        """1-NN over a partition of the rows, on the CPU, with no Gram matrix held by others."""
        return (
            self.n_neighbors == 1
            and not self.standardize
            and type(products_for(context)) is NumpyProducts
            and fold_of_rows(context) is not None
            and not gram_held_by_others(context)
        )

    def fold_memory(self, context: CVContext, n_train: int, n_test: int) -> int:
        """Streaming: a few blocks per thread; else test x train products and distances."""
        if self._streams(context):
            return (5 * BLOCK * BLOCK * context.n_jobs + 2 * context.n_samples) * F64
        return (2 * n_test * n_train + BLOCK * context.n_samples) * F64

    def shared_keys(self, context: CVContext) -> tuple:
        """The run-wide work its folds wait on (:class:`bench.fold_fastpath.SharedWork`)."""
        return ("knn1-nearest", "gram", "x64")

    def fit_predict_fold(self, fold: FoldView, y_train: np.ndarray) -> FoldOutput | None:
        """Neighbours of the fold's test rows, streamed or from the shared (or blocked) products."""
        self.check_params()
        ctx = fold.context
        if self._streams(ctx):

            def every_fold() -> np.ndarray:
                fold_of = fold_of_rows(ctx)
                x, sq = shared_x64(ctx), shared_sq(ctx)
                return nearest_in_other_folds(x, sq, fold_of, products_for(ctx))

            nearest = ctx.shared("knn1-nearest", every_fold)[fold.test]
            y_all = np.empty(ctx.n_samples, dtype=y_train.dtype)
            y_all[fold.train] = y_train
            classes = np.unique(y_train)
            pred = y_all[nearest]
            proba = (pred[:, None] == classes[None, :]).astype(np.float64)
            return FoldOutput(pred=pred, classes=classes, proba=proba)
        b = test_block(fold, bool(self.standardize))
        classes, y_fit = np.unique(y_train, return_inverse=True)
        d2 = squared_distances(b.k_test, b.sq_test, b.sq_train)
        del b
        proba = self._votes(d2, y_fit, len(classes))
        return FoldOutput(pred=classes[np.argmax(proba, axis=1)], classes=classes, proba=proba)
