"""``KernelSVC``: scikit-learn's ``SVC`` with its kernel computed by BLAS and shared across folds."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted, validate_data

from bench.fold_fastpath import CVContext, FoldOutput, FoldView
from bench.memory_budget import format_bytes
from plugins.fast_estimators.gram import (
    F64,
    as_float64,
    check_gamma,
    float32_block,
    fold_block,
    fold_x_var,
    gram_bytes,
    gram_fits,
    kernel_in_place,
    linear_gram,
    scale_gamma,
    sq_norms,
    svm_fold_bytes,
    test_block,
    use_gram,
    x64_bytes,
)
from plugins.fast_estimators.svm_replay import fit_binary, replay_applies

#: Training rows above which an exact SVM fit says it can take long (libsvm's SMO).
LARGE_FOLD_ROWS = 5_000
#: The opt-in approximate classifier (plugins/sklearn_classifiers.py) for each exact kernel.
APPROXIMATION_FOR_KERNEL = {
    "linear": "svm-linear-approx",
    "rbf": "svm-gaussian-nystroem",
    "poly": "svm-cubic-nystroem",
    "sigmoid": "svm-gaussian-nystroem (option kernel = 'sigmoid')",
}


def large_fold_note(kernel: str, n_train: int | None = None) -> str:
    """The note on an exact SVM fit of a large fold: once per run, and in dry runs.

    Without ``n_train`` it speaks of the limit (:data:`LARGE_FOLD_ROWS`), as the
    run's note does; with it, of that many training rows per fold.
    """
    rows = (
        f"more than {LARGE_FOLD_ROWS:,} training rows"
        if n_train is None
        else f"{n_train:,} training rows per fold"
    )
    return (
        f"exact SVM (kernel={kernel!r}) on {rows}: "
        "libsvm's SMO grows roughly between n^2 and n^3 and can take minutes to hours per fold "
        "at this size; "
        f"the opt-in approximation {APPROXIMATION_FOR_KERNEL[kernel]} is much faster (labelled '≈')"
    )


def binary_predictions(svc: SVC, decision: np.ndarray, k_test: np.ndarray) -> np.ndarray:
    """``svc.predict(k_test)`` read off the decision values when there are two classes.

    libsvm votes for the first class when its value ``sum - rho`` is ``> 0``, else for the
    second; scikit-learn's binary decision function is ``-(sum - rho)`` from the same
    ``svm_predict_values``. So the second class wins exactly when ``not decision < 0``
    (NaN included). More classes: libsvm's one-vs-one vote.
    """
    if len(svc.classes_) != 2 or decision.ndim != 1:
        return svc.predict(k_test)
    return svc.classes_[(~(decision < 0)).astype(np.intp)]


class KernelSVC(ClassifierMixin, BaseEstimator):
    """``SVC`` with its kernel computed by BLAS (``kernel="precomputed"`` inside).

    Same parameters and predictions as ``SVC(kernel=...)`` (optionally after a
    ``StandardScaler`` when ``standardize=True``), see :meth:`reference`.
    ``coef0`` is the polynomial offset: ``(gamma * <x, z> + coef0) ** degree``.
    Under cross-validation (:meth:`fit_predict_fold`) every fold's kernel is a
    block of one shared Gram matrix (see :mod:`plugins.fast_estimators.gram`).
    """

    def __init__(
        self,
        kernel: str = "linear",
        C: float = 1.0,
        gamma: float | str = "scale",
        degree: int = 3,
        coef0: float = 0.0,
        standardize: bool = False,
        tol: float = 1e-3,
        class_weight: dict | str | None = None,
        max_iter: int = -1,
        cache_size: float = 200,
        random_state: int | None = 0,
    ) -> None:
        self.kernel = kernel
        self.C = C
        self.gamma = gamma
        self.degree = degree
        self.coef0 = coef0
        self.standardize = standardize
        self.tol = tol
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.cache_size = cache_size
        self.random_state = random_state

    @property
    def shares_gram(self) -> bool:
        """Whether its folds read the run's shared Gram matrix (not with ``standardize``)."""
        return not self.standardize

    def check_params(self) -> None:
        """Raise ValueError on a parameter value SVC would reject."""
        if self.kernel not in ("linear", "poly", "rbf", "sigmoid"):
            raise ValueError(f"kernel must be linear, poly, rbf or sigmoid, not {self.kernel!r}")
        check_gamma(self.gamma)
        self._svc()._validate_params()

    def _svc(self) -> SVC:
        return SVC(
            kernel="precomputed",
            C=self.C,
            tol=self.tol,
            class_weight=self.class_weight,
            max_iter=self.max_iter,
            cache_size=self.cache_size,
            random_state=self.random_state,
        )

    def reference(self) -> Any:
        """The plain scikit-learn estimator this one reproduces."""
        svc = SVC(
            kernel=self.kernel,
            C=self.C,
            gamma=self.gamma,
            degree=self.degree,
            coef0=self.coef0,
            tol=self.tol,
            class_weight=self.class_weight,
            max_iter=self.max_iter,
            cache_size=self.cache_size,
            random_state=self.random_state,
        )
        return make_pipeline(StandardScaler(), svc) if self.standardize else svc

    def _kernel(self, gram: np.ndarray, sq_a: np.ndarray, sq_b: np.ndarray, gamma: float):
        return kernel_in_place(
            self.kernel,
            gram,
            gamma=gamma,
            degree=self.degree,
            coef0=self.coef0,
            sq_a=sq_a,
            sq_b=sq_b,
        )

    def fit(self, X: Any, y: Any) -> KernelSVC:
        self.check_params()
        X, y = validate_data(self, X, y, dtype=np.float64)
        self.scaler_ = StandardScaler().fit(X) if self.standardize else None
        xf = as_float64(self.scaler_.transform(X) if self.scaler_ is not None else X)
        self.X_fit_ = xf
        self.sq_fit_ = sq_norms(xf)
        self.gamma_ = scale_gamma(self.gamma, xf.shape[1], float(xf.var()))
        k = self._kernel(linear_gram(xf), self.sq_fit_, self.sq_fit_, self.gamma_)
        self.svc_ = self._svc().fit(k, y)
        self.classes_ = self.svc_.classes_
        return self

    def _test_kernel(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "svc_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        xf = as_float64(self.scaler_.transform(X) if self.scaler_ is not None else X)
        sq = sq_norms(xf)
        return self._kernel(linear_gram(xf, self.X_fit_), sq, self.sq_fit_, self.gamma_)

    def decision_function(self, X: Any) -> np.ndarray:
        return self.svc_.decision_function(self._test_kernel(X))

    def predict(self, X: Any) -> np.ndarray:
        return self.svc_.predict(self._test_kernel(X))

    # -- the fold fast path (bench.fold_fastpath.FoldFastPath) ---------------------------

    def fold_memory(self, context: CVContext, n_train: int, n_test: int) -> int:
        """Peak bytes of one fold fit: its kernel blocks, libsvm's cache, X.var()'s copy.

        The fit that will build the run's Gram matrix also counts it (and the float64 features).
        """
        var_copy = not context.has_shared("x-var")
        own = svm_fold_bytes(
            n_train, n_test, context.n_features, self.cache_size, var_copy=var_copy
        )
        if self.standardize or context.has_shared("gram") or not gram_fits(context):
            return own
        return own + gram_bytes(context) + x64_bytes(context)

    def _block_fits(self, context: CVContext, n_train: int, n_test: int) -> bool:
        extra = 2 * n_train * context.n_features * F64 if self.standardize else 0
        need = context.X.nbytes + x64_bytes(context) + extra
        need += svm_fold_bytes(n_train, n_test, context.n_features, self.cache_size)
        return need <= context.memory_limit

    def fit_size_note(self, n_train: int, n_features: int) -> str | None:
        """Before a run (``--dry-run``): the large-fold note when folds exceed the limit."""
        return large_fold_note(self.kernel, n_train) if n_train > LARGE_FOLD_ROWS else None

    def shared_keys(self, context: CVContext) -> tuple:
        """The run-wide work its folds wait on (:class:`bench.fold_fastpath.SharedWork`)."""
        return ("gram", "x-var", "x64")

    def fit_predict_fold(self, fold: FoldView, y_train: np.ndarray) -> FoldOutput | None:
        """Fit on the fold's kernel block (a private copy, kernel applied in place), predict."""
        self.check_params()
        ctx = fold.context
        n_train, n_test = len(fold.train), len(fold.test)
        if n_train > LARGE_FOLD_ROWS:
            ctx.note("note: " + large_fold_note(self.kernel))
        if not self._block_fits(ctx, n_train, n_test):
            ctx.note(
                f"note: a {n_train:,} x {n_train:,} kernel block does not fit memory_limit "
                f"{format_bytes(ctx.memory_limit)}; SVMs use libsvm's own kernel cache (slower)"
            )
            ref = clone(self.reference()).fit(fold.x_train(), y_train)
            x_test = fold.x_test()
            return FoldOutput(
                pred=ref.predict(x_test),
                classes=ref.classes_,
                decision=ref.decision_function(x_test),
            )
        need_var = self.kernel != "linear" and self.gamma == "scale"
        replay = replay_applies(n_train, len(np.unique(y_train)), self.max_iter)
        if replay and not self.standardize and use_gram(ctx):
            return self._replay_fold(fold, y_train, need_var)
        b = fold_block(fold, bool(self.standardize), need_var=need_var)
        gamma = scale_gamma(self.gamma, fold.n_features, b.x_var)
        k_train = self._kernel(b.k_train, b.sq_train, b.sq_train, gamma)
        k_test = self._kernel(b.k_test, b.sq_test, b.sq_train, gamma)
        if replay:
            del b
            return self._replay_output(k_train, y_train, k_test)
        svc = self._svc().fit(k_train, y_train)
        del k_train, b
        decision = svc.decision_function(k_test)
        return FoldOutput(
            pred=binary_predictions(svc, decision, k_test),
            classes=svc.classes_,
            decision=decision,
        )

    def _replay_fold(self, fold: FoldView, y_train: np.ndarray, need_var: bool) -> FoldOutput:
        """The libsvm replay on the fold's float32 kernel block, built from the shared Gram."""
        x_var = fold_x_var(fold) if need_var else float("nan")
        gamma = scale_gamma(self.gamma, fold.n_features, x_var)
        k_train, diagonal = float32_block(
            fold, lambda chunk, sq_rows, sq_train: self._kernel(chunk, sq_rows, sq_train, gamma)
        )
        t = test_block(fold, False)
        k_test = self._kernel(t.k_test, t.sq_test, t.sq_train, gamma)
        return self._replay_output(k_train, y_train, k_test, diagonal)

    def _replay_output(
        self,
        k_train: np.ndarray,
        y_train: np.ndarray,
        k_test: np.ndarray,
        diagonal: np.ndarray | None = None,
    ) -> FoldOutput:
        """Fit the replay on a kernel block and predict the fold's test rows."""
        model = fit_binary(
            k_train,
            y_train,
            C=self.C,
            class_weight=self.class_weight,
            tol=self.tol,
            diagonal=diagonal,
        )
        decision = model.decision_function(k_test)
        return FoldOutput(pred=model.predict(decision), classes=model.classes, decision=decision)
