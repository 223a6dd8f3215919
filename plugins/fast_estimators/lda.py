"""``SmallSideLDA``: scikit-learn's svd-solver discriminant, solved on the smaller side of ``X``."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.utils.validation import check_is_fitted, validate_data

from bench.fold_fastpath import CVContext, FoldOutput, FoldView
from plugins.fast_estimators.fold_blocks import rows_stats
from plugins.fast_estimators.gram import F64, shared_x64
from plugins.fast_estimators.lda_folds import FoldDiscriminant, n_side_bytes, n_side_folds
from plugins.fast_estimators.lda_scatter_folds import d_side_bytes, d_side_folds
from plugins.fast_estimators.lda_solvers import between_rank_full, solve_d_side, solve_n_side
from plugins.fast_estimators.products import NumpyProducts, products_for


def _lda_fac_is_1_over_n() -> bool:
    """Whether this scikit-learn's svd solver scales by 1/n (newer) or 1/(n - k) (older)."""
    try:
        src = inspect.getsource(LinearDiscriminantAnalysis._solve_svd)
    except (OSError, TypeError):  # pragma: no cover - no sources installed
        return True
    return "1.0 / (n_samples - n_classes)" not in src


_LDA_FAC_IS_1_OVER_N = _lda_fac_is_1_over_n()
MIN_BATCHED_FOLDS = 3  # n- or d-side folds solved together from this many (break-even ~2)


def _run_classes(ctx: CVContext) -> int:
    """Number of classes of the run (its labels are class indices 0..k-1)."""
    return int(np.max(ctx.y)) + 1


def _held_out_squares(ctx: CVContext, picked: list[int]) -> int:
    """Sum over the picked folds of (rows outside the training set)^2: their Schur blocks."""
    return sum((ctx.n_samples - len(ctx.folds[i][0])) ** 2 for i in picked)


class SmallSideLDA(ClassifierMixin, BaseEstimator):
    """Linear discriminant analysis, scikit-learn's ``solver="svd"`` solved on the small side.

    With fewer samples than features, the SVD of the (within-class centred,
    scaled) n x d training matrix is replaced by a Cholesky factorisation of
    its n x n Gram matrix with the k known null directions (class indicators)
    filled in; with more samples than features, by a Cholesky factorisation of
    the d x d within-class scatter (under cross-validation: the run's scatter
    downdated by the fold's test rows), refined against the exact operator.
    Both give the same pseudo-inverse discriminant (:mod:`.lda_solvers`).
    When the problem is too ill-conditioned to reproduce scikit-learn's rank
    cut (``tol``), or with ``shrinkage`` / another solver, it falls back to
    :class:`~sklearn.discriminant_analysis.LinearDiscriminantAnalysis` itself.
    ``method_`` says which was used. ``random_state`` is accepted and unused.
    """

    def __init__(
        self,
        solver: str = "svd",
        shrinkage: float | str | None = None,
        priors: Any = None,
        tol: float = 1e-4,
        random_state: int | None = 0,
    ) -> None:
        self.solver = solver
        self.shrinkage = shrinkage
        self.priors = priors
        self.tol = tol
        self.random_state = random_state

    def reference(self) -> LinearDiscriminantAnalysis:
        return LinearDiscriminantAnalysis(
            solver=self.solver, shrinkage=self.shrinkage, priors=self.priors, tol=self.tol
        )

    def check_params(self) -> None:
        self.reference()._validate_params()
        if self.priors is not None and np.any(np.asarray(self.priors, dtype=float) < 0):
            raise ValueError("priors must be non-negative")

    def _fast_ok(self, n_classes: int) -> bool:
        """Whether a fast path applies (``tol <= 0``: scikit-learn keeps its rounding noise)."""
        return self.solver == "svd" and self.shrinkage is None and n_classes > 1 and self.tol > 0

    def _priors(self, counts: np.ndarray) -> np.ndarray:
        priors = counts / counts.sum() if self.priors is None else np.asarray(self.priors, float)
        return priors / priors.sum()

    def _fac(self, n: int, k: int) -> float:
        return 1.0 / (n if _LDA_FAC_IS_1_OVER_N else n - k)

    def fit(self, X: Any, y: Any) -> SmallSideLDA:
        self.check_params()
        X, y = validate_data(self, X, y, dtype=np.float64)
        self.classes_ = np.unique(y)
        n, d = X.shape
        k = len(self.classes_)
        self.method_ = "sklearn"
        if self._fast_ok(k):
            if n - k < d and self._fit_small(X, y):
                self.method_ = "small-side"
                return self
            if n - k >= d:
                _, yi = np.unique(y, return_inverse=True)
                rows = np.arange(n)
                scatter = NumpyProducts().scatter(np.ascontiguousarray(X))
                if self._fit_scatter(X, rows, yi, k, scatter):
                    self.method_ = "scatter"
                    return self
        try:
            lda = self.reference().fit(X, y)
        except IndexError as exc:  # scikit-learn's svd solver at rank 0
            raise ValueError(
                "the training features do not vary within any class: no linear discriminant"
            ) from exc
        self.coef_, self.intercept_ = lda.coef_, lda.intercept_
        return self

    def _finish(self, means, priors, centred, w, std) -> bool:
        """``coef_``/``intercept_`` from ``w = pinv(Xw^T Xw) centred^T`` (False: use sklearn)."""
        if not between_rank_full(centred, w, priors, self.tol):
            return False
        k = len(priors)
        xbar = priors @ means
        coef = (w / std[:, None]).T
        quad = np.sum(centred * w.T, axis=1)
        intercept = -0.5 * quad + np.log(priors) - coef @ xbar
        if k == 2:
            coef = (coef[1] - coef[0])[None, :]
            intercept = np.array([intercept[1] - intercept[0]])
        self.coef_, self.intercept_ = coef, intercept
        return True

    def _fit_small(self, X: np.ndarray, y: np.ndarray) -> bool:
        """The svd solver's discriminant via an n x n Cholesky; False if not safe."""
        classes, yi = np.unique(y, return_inverse=True)
        k = len(classes)
        n = X.shape[0]
        counts = np.bincount(yi, minlength=k).astype(float)
        priors = self._priors(counts)
        means = np.stack([X[yi == c].mean(axis=0) for c in range(k)])
        xc = X - means[yi]
        std = xc.std(axis=0)
        std[std == 0] = 1.0
        xc *= math.sqrt(self._fac(n, k)) / std
        indicators = np.zeros((n, k))
        indicators[np.arange(n), yi] = 1.0 / np.sqrt(counts[yi])
        centred = (means - priors @ means) / std  # D^-1 (m_c - xbar), k x d
        w = solve_n_side(xc, indicators, centred, self.tol)
        return w is not None and self._finish(means, priors, centred, w, std)

    def _fit_scatter(
        self, X: np.ndarray, rows: np.ndarray, yi: np.ndarray, k: int, scatter: np.ndarray
    ) -> bool:
        """The discriminant via the d x d side; ``scatter = X[rows]^T X[rows]`` (overwritten).

        ``X`` is float64 (all rows of the run); ``yi`` holds ``rows``' labels 0..k-1.
        """
        n = len(rows)
        counts = np.bincount(yi, minlength=k).astype(float)
        if np.any(counts == 0):
            return False
        indicator = np.zeros((X.shape[0], k))
        indicator[rows, yi] = 1.0
        means = (indicator.T @ X) / counts[:, None]
        stats = rows_stats(X, rows, yi, k)
        lo, hi = stats.lo, stats.hi
        varies = np.any(hi > lo, axis=0)
        if np.any(~varies & np.any(lo != 0, axis=0)):
            return False  # constant non-zero columns: sklearn's std there is rounding noise
        priors = self._priors(counts)
        centred_raw = means - priors @ means
        scatter -= means.T @ (counts[:, None] * means)  # S_w = X^T X - sum n_c m_c m_c^T

        def apply_sw(v: np.ndarray) -> np.ndarray:
            u = X @ v
            z = np.zeros_like(u)
            z[rows] = u[rows] - (means @ v)[yi]
            per_class = indicator.T @ z
            return X.T @ z - means.T @ per_class

        cols = np.flatnonzero(varies)
        solved = solve_d_side(scatter, cols, self._fac(n, k), centred_raw, apply_sw, self.tol)
        if solved is None:
            return False
        w, std = solved
        return self._finish(means, priors, centred_raw / std, w, std)

    # -- the fold fast path (bench.fold_fastpath.FoldFastPath) ---------------------------

    def fold_memory(self, context: CVContext, n_train: int, n_test: int) -> int:
        """d side: three d x d matrices and the test rows; n side: all folds' batched solve
        (once), else the fold's own n x n Gram and X copies."""
        d = context.n_features
        if n_train >= d:
            own = (4 * d * d + n_test * d + 2 * context.n_samples * 4) * F64
            if context.y is None:
                return own
            if context.has_shared(self._d_side_key()):
                solved = self._d_side_solutions(context)
                done = solved and all(v is not None for v in solved.values())
                return n_test * d * F64 if done else own
            picked = self._d_side_folds(context, _run_classes(context))
            width = len(picked) * _run_classes(context)
            return max(own, d_side_bytes(context.n_samples, d, width)) if picked else own
        own = (2 * n_train * n_train + 3 * n_train * d) * F64
        if context.y is None:
            return own
        if not context.has_shared(self._n_side_key()):
            k = _run_classes(context)
            picked = self._n_side_folds(context, k)
            if not picked:
                return own
            schur = _held_out_squares(context, picked)
            return max(own, n_side_bytes(context.n_samples, d, len(picked) * k, schur))
        solved = self._n_side_solutions(context)
        if not solved or any(v is None for v in solved.values()):
            return own
        return n_test * d * F64

    def _n_side_key(self) -> tuple:
        priors = None if self.priors is None else tuple(np.ravel(self.priors).tolist())
        return ("lda-n-side", float(self.tol), priors)

    def _d_side_key(self) -> tuple:
        return ("lda-d-side",) + self._n_side_key()[1:]

    @staticmethod
    def _d_side_folds(ctx: CVContext, k: int) -> list[int]:
        """The folds to solve together on the d side (at least :data:`MIN_BATCHED_FOLDS`)."""
        picked = [i for i, (tr, _) in enumerate(ctx.folds) if len(tr) - k >= ctx.n_features]
        return picked if len(picked) >= MIN_BATCHED_FOLDS else []

    def _d_side_solutions(self, ctx: CVContext) -> dict[int, FoldDiscriminant | None]:
        """Every d-side fold's discriminant, solved together once per run
        (:mod:`.lda_scatter_folds`); empty when :meth:`_d_side_folds` picks none."""
        return self._batched(
            ctx,
            self._d_side_key(),
            self._d_side_folds,
            lambda *args, **kw: d_side_folds(*args, scatter=self._total_scatter(ctx), **kw),
        )

    def _batched(self, ctx: CVContext, key: tuple, pick, solver) -> dict:
        """``{fold index: solution or None}`` of the folds ``pick(ctx, k)`` chooses, by
        ``solver`` (:func:`.lda_folds.n_side_folds`' signature), once per run under ``key``."""

        def solve() -> dict[int, FoldDiscriminant | None]:
            y = np.asarray(ctx.y, dtype=np.int64)
            k = _run_classes(ctx)
            picked = pick(ctx, k)
            if not picked:
                return {}
            trains = [ctx.folds[i][0] for i in picked]
            x = shared_x64(ctx)
            solved = solver(x, y, trains, k, tol=self.tol, fac=self._fac, priors_of=self._priors)
            return dict(zip(picked, solved, strict=True))

        return ctx.shared(key, solve)

    @staticmethod
    def _total_scatter(ctx: CVContext) -> np.ndarray:
        """``X^T X`` of all the run's rows (float64, d x d), once per run."""

        def total() -> np.ndarray:
            ctx.budget.take(ctx.n_features**2 * F64)
            return products_for(ctx).scatter(shared_x64(ctx))

        return ctx.shared("lda-scatter", total)

    @staticmethod
    def _n_side_folds(ctx: CVContext, k: int) -> list[int]:
        """The folds to solve together: fewer training rows than features (plus k).

        Empty unless there are :data:`MIN_BATCHED_FOLDS` of them (one or two
        folds, a hold-out or an external test set, are cheaper on their own)
        and their held-out parts are small (the Schur blocks, one per fold
        over the rows outside its training set, add up to at most n x n).
        """
        n = ctx.n_samples
        picked = [i for i, (tr, _) in enumerate(ctx.folds) if len(tr) - k < ctx.n_features]
        if len(picked) < MIN_BATCHED_FOLDS:
            return []
        if _held_out_squares(ctx, picked) > n * n:
            return []
        return picked

    def _n_side_solutions(self, ctx: CVContext) -> dict[int, FoldDiscriminant | None]:
        """Every n-side fold's discriminant, solved together once per run (:mod:`.lda_folds`).

        Empty when :meth:`_n_side_folds` picks none.
        """
        return self._batched(ctx, self._n_side_key(), self._n_side_folds, n_side_folds)

    def _predict_fold(self, fold: FoldView) -> FoldOutput:
        x_test = fold.x_test()
        return FoldOutput(
            pred=self.predict(x_test), classes=self.classes_, proba=self.predict_proba(x_test)
        )

    def shared_keys(self, context: CVContext) -> tuple:
        """The run-wide work its folds wait on (:class:`bench.fold_fastpath.SharedWork`)."""
        return (self._n_side_key(), self._d_side_key(), "lda-scatter")

    def fit_predict_fold(self, fold: FoldView, y_train: np.ndarray) -> FoldOutput | None:
        """All folds solved together (n side or d side); else, on the d side, the run's
        scatter minus the rows outside the fold's training set.

        None (the generic path) for a fold neither can vouch for.
        """
        self.check_params()
        classes, yi = np.unique(y_train, return_inverse=True)
        k = len(classes)
        ctx = fold.context
        if not self._fast_ok(k):
            return None
        self.classes_ = classes
        self.n_features_in_ = ctx.n_features
        if len(fold.train) - k < ctx.n_features:
            if ctx.y is None or _run_classes(ctx) != k:
                return None
            sol = self._n_side_solutions(ctx).get(fold.index)
            if sol is None or not self._finish(sol.means, sol.priors, sol.centred, sol.w, sol.std):
                return None
            self.method_ = "small-side-folds"
            return self._predict_fold(fold)
        if ctx.y is not None and _run_classes(ctx) == k:
            sol = self._d_side_solutions(ctx).get(fold.index)
            if sol is not None and self._finish(sol.means, sol.priors, sol.centred, sol.w, sol.std):
                self.method_ = "scatter-folds"
                return self._predict_fold(fold)
        if len(np.unique(fold.train)) != len(fold.train):
            return None  # a repeated row weighs twice in X[train]; the exact operator sees it once
        x = shared_x64(ctx)
        outside = fold.test  # train and test are disjoint (checked); rows in neither count too
        n_test = len(np.unique(fold.test))
        if len(fold.train) + n_test != ctx.n_samples or n_test != len(fold.test):
            outside = np.setdiff1d(np.arange(ctx.n_samples), fold.train)
        scatter = self._total_scatter(ctx) - products_for(ctx).scatter(x[outside])
        if not self._fit_scatter(x, fold.train, yi, k, scatter):
            return None
        self.method_ = "scatter"
        return self._predict_fold(fold)

    def decision_function(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        scores = X @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict_proba(self, X: Any) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = expit(scores)
            return np.vstack([1 - p, p]).T
        return softmax(scores, axis=1)

    def predict(self, X: Any) -> np.ndarray:
        scores = self.decision_function(X)
        idx = (scores > 0).astype(int) if scores.ndim == 1 else np.argmax(scores, axis=1)
        return self.classes_[idx]
