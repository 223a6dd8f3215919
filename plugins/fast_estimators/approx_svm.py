"""Opt-in *approximate* SVMs for 20,000+ images: liblinear, and a Nyström feature map + liblinear.

The exact SVMs (:class:`~plugins.fast_estimators.svm.KernelSVC`, libsvm's SMO)
grow roughly between n^2 and n^3 in the training rows; at 18,000 x 4,096 one
linear fold had not converged after 39 minutes on two cores. These two
estimators trade exactness for time and say so (their registry labels carry
"≈"; docs/classifiers.md, "Approximate SVMs"):

* :class:`LiblinearSVC` - a linear SVM (L2-regularised, ``C``) solved by
  liblinear (:class:`sklearn.svm.LinearSVC`) instead of libsvm's SMO. By
  default ``loss="squared_hinge"`` in the primal (trust-region Newton): it
  converges in tens of Newton steps at any n, where the hinge loss's dual
  coordinate descent (``loss="hinge"``, SVC's own objective) stopped at 1,000
  epochs unconverged at 18,000 x 4,096. Either way liblinear
  appends a constant feature ``intercept_scaling`` to every row and
  regularises its weight, i.e. the intercept ``b`` pays ``(b / s)^2 / 2``.
  ``intercept_scaling="auto"`` sets ``s`` to the root-mean-square norm of the
  training rows (the constant feature is as large as a typical row).
* :class:`NystroemSVC` - :class:`sklearn.kernel_approximation.Nystroem`
  (``n_components`` training rows drawn with ``random_state`` as landmarks,
  the kernel and ``gamma="scale"`` = ``1 / (d * X.var())`` resolved on the
  training rows as ``SVC`` does) followed by the same linear SVM.

Both are deterministic: the primal Newton solver draws no random numbers,
so its fits run in parallel; the dual (``loss="hinge"``) shuffles coordinates
with one random generator per process, so those fits take
:data:`LIBLINEAR_LOCK` (two concurrent fits would share the generator). Features stay float32 where they are;
only the rows a fit needs are converted to float64, in chunks.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.kernel_approximation import Nystroem
from sklearn.svm import LinearSVC
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from bench.fold_fastpath import CVContext, FoldOutput, FoldView
from plugins.fast_estimators.gram import F64, check_gamma, scale_gamma
from plugins.fast_estimators.svm import KernelSVC

#: Held around every liblinear fit (its shuffling generator is process-global).
LIBLINEAR_LOCK = threading.Lock()
CHUNK_ROWS = 2048
NODE_BYTES = 16  # liblinear's feature_node: int index + double value (padded)
KERNELS = ("rbf", "poly", "sigmoid")
LOSSES = ("squared_hinge", "hinge")


def float64_rows(X: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """C-contiguous float64 ``X[rows]``, filled chunk by chunk (no float32 copy in between)."""
    n = X.shape[0] if rows is None else len(rows)
    if rows is None and X.dtype == np.float64 and X.flags.c_contiguous:
        return X
    out = np.empty((n, X.shape[1]), dtype=np.float64)
    for i in range(0, n, CHUNK_ROWS):
        j = min(i + CHUNK_ROWS, n)
        out[i:j] = X[i:j] if rows is None else X[rows[i:j]]
    return out


def row_stats(X: np.ndarray, rows: np.ndarray | None = None) -> tuple[float, float]:
    """``(X[rows].var(), mean squared row norm)`` in float64, two passes over row chunks."""
    n = X.shape[0] if rows is None else len(rows)
    if n == 0:
        return 0.0, 0.0

    def chunks():
        for i in range(0, n, CHUNK_ROWS):
            j = min(i + CHUNK_ROWS, n)
            yield np.asarray(X[i:j] if rows is None else X[rows[i:j]], dtype=np.float64)

    total = sum(float(c.sum()) for c in chunks())
    mean = total / (n * X.shape[1])
    squares = centred = 0.0
    for c in chunks():
        squares += float(np.einsum("ij,ij->", c, c))
        centred += float(np.square(c - mean).sum())
    return centred / (n * X.shape[1]), squares / n


def nonzero_fraction(context: CVContext) -> float:
    """Share of non-zero feature values (liblinear stores only those), once per run."""
    return context.shared(
        "nonzero-fraction", lambda: np.count_nonzero(context.X) / max(context.X.size, 1)
    )


class _LiblinearParams(ClassifierMixin, BaseEstimator):
    """The linear SVM's parameters and its (locked) liblinear fit, shared by both approximations."""

    C: float
    loss: str
    intercept_scaling: float | str
    tol: float
    max_iter: int
    class_weight: dict | str | None
    random_state: int | None

    def _linear_svc(self, scaling: float) -> LinearSVC:
        return LinearSVC(
            C=self.C,
            loss=self.loss,
            dual=self.loss == "hinge",
            intercept_scaling=scaling,
            tol=self.tol,
            max_iter=self.max_iter,
            class_weight=self.class_weight,
            random_state=self.random_state,
        )

    def _check_scaling(self) -> None:
        s = self.intercept_scaling
        if isinstance(s, str) and s != "auto":
            raise ValueError(f"intercept_scaling must be 'auto' or > 0, not {s!r}")
        if not isinstance(s, str) and not s > 0:
            raise ValueError(f"intercept_scaling must be 'auto' or > 0, not {s!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        self._linear_svc(1.0)._validate_params()

    def _fit_linear(self, Z: np.ndarray, y: np.ndarray, mean_sq_norm: float) -> None:
        """liblinear on float64 ``Z`` (under the lock); sets ``svm_``, ``classes_``, ``converged_``."""
        s = self.intercept_scaling
        if s == "auto":
            self.intercept_scaling_ = float(np.sqrt(mean_sq_norm)) or 1.0
        else:
            self.intercept_scaling_ = float(s)
        svm = self._linear_svc(self.intercept_scaling_)
        with LIBLINEAR_LOCK if svm.dual else contextlib.nullcontext():
            svm.fit(Z, y)
        self.svm_ = svm
        self.classes_ = svm.classes_
        self.n_iter_ = int(svm.n_iter_)
        self.converged_ = self.n_iter_ < self.max_iter

    def _not_converged(self, ctx: CVContext, what: str) -> None:
        if not self.converged_:
            ctx.note(
                f"note: approximate {what}: liblinear stopped at max_iter={self.max_iter} "
                f"iterations on a fold before reaching tol={self.tol:g}; the fit is further "
                "from its optimum (raise max_iter to go further)"
            )


class LiblinearSVC(_LiblinearParams):
    """Approximates ``SVC(kernel="linear")``: a linear SVM solved by liblinear.

    ``loss="squared_hinge"`` (default): the L2-loss SVM in the primal
    (Newton); ``loss="hinge"``: SVC's own objective by dual coordinate descent.

    liblinear regularises the intercept (see the module docstring for
    ``intercept_scaling``); multi-class is one-vs-rest (``SVC``: one-vs-one).
    :meth:`reference` is the plain ``LinearSVC`` it equals; :meth:`exact` the
    exact SVM it approximates.
    """

    def __init__(
        self,
        C: float = 1.0,
        loss: str = "squared_hinge",
        intercept_scaling: float | str = "auto",
        tol: float = 1e-3,
        max_iter: int = 1000,
        class_weight: dict | str | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.C = C
        self.loss = loss
        self.intercept_scaling = intercept_scaling
        self.tol = tol
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.random_state = random_state

    def check_params(self) -> None:
        """Raise ValueError on a parameter value LinearSVC would reject."""
        self._check_scaling()

    def reference(self) -> LiblinearSVC:
        """Itself, unfitted: the fast path gives its own ``fit`` + ``predict``.

        (Fitted, ``svm_`` is the plain ``LinearSVC`` it wraps, with
        ``intercept_scaling`` resolved on the training rows.)
        """
        return clone(self)

    def exact(self) -> Any:
        """The exact SVM this approximates (``KernelSVC(kernel="linear")``)."""
        return KernelSVC(kernel="linear", C=self.C, class_weight=self.class_weight)

    def fit(self, X: Any, y: Any) -> LiblinearSVC:
        self.check_params()
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32))
        x64 = float64_rows(X)
        self._fit_linear(x64, y, row_stats(X)[1] if self.intercept_scaling == "auto" else 0.0)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "svm_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.svm_.decision_function(float64_rows(X))

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "svm_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.svm_.predict(float64_rows(X))

    # -- the fold fast path: no float32 copy of the fold, honest memory -------------------

    def fold_memory(self, context: CVContext, n_train: int, n_test: int) -> int:
        """The float64 training rows, liblinear's copy of their non-zeros, the test rows."""
        d = context.n_features
        nodes = (int(n_train * d * nonzero_fraction(context)) + 2 * n_train) * NODE_BYTES
        return (n_train + n_test) * d * F64 + nodes

    def fit_predict_fold(self, fold: FoldView, y_train: np.ndarray) -> FoldOutput:
        """``fit(X[train])`` + ``predict(X[test])``, reading the rows straight into float64."""
        self.check_params()
        ctx = fold.context
        self.n_features_in_ = ctx.n_features
        auto = self.intercept_scaling == "auto"
        sq = row_stats(ctx.X, fold.train)[1] if auto else 0.0
        self._fit_linear(float64_rows(ctx.X, fold.train), y_train, sq)
        self._not_converged(ctx, "linear SVM (liblinear)")
        x_test = float64_rows(ctx.X, fold.test)
        return FoldOutput(
            pred=self.svm_.predict(x_test),
            classes=self.classes_,
            decision=self.svm_.decision_function(x_test),
        )


class NystroemSVC(_LiblinearParams):
    """Approximates ``SVC(kernel=...)``: a Nyström feature map followed by liblinear's linear SVM.

    ``n_components`` landmarks (at most the training rows) are drawn from the
    training rows with ``random_state``; ``gamma="scale"`` is ``1 / (d *
    X.var())`` of the training rows, as ``SVC``. The map is computed in float64
    (a float32 landmark kernel's rounding would be amplified by ``1 / sqrt``
    of its small eigenvalues), ``CHUNK_ROWS`` rows at a time. :meth:`reference` is the estimator itself
    (an approximation has no exact scikit-learn twin); :meth:`exact` gives
    the kernel SVM it approximates.
    """

    def __init__(
        self,
        kernel: str = "rbf",
        n_components: int = 1000,
        gamma: float | str = "scale",
        degree: int = 3,
        coef0: float = 0.0,
        C: float = 1.0,
        loss: str = "squared_hinge",
        intercept_scaling: float | str = "auto",
        tol: float = 1e-3,
        max_iter: int = 1000,
        class_weight: dict | str | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.kernel = kernel
        self.n_components = n_components
        self.gamma = gamma
        self.degree = degree
        self.coef0 = coef0
        self.C = C
        self.loss = loss
        self.intercept_scaling = intercept_scaling
        self.tol = tol
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.random_state = random_state

    def check_params(self) -> None:
        """Raise ValueError on a parameter value Nystroem or LinearSVC would reject."""
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, not {self.kernel!r}")
        check_gamma(self.gamma)
        n = self.n_components
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n_components must be an integer >= 1, not {n!r}")
        self._check_scaling()

    def reference(self) -> NystroemSVC:
        """Itself, unfitted: its predictions are those of its own ``fit`` + ``predict``."""
        return clone(self)

    def exact(self) -> Any:
        """The exact kernel SVM this approximates (``KernelSVC`` with the same kernel)."""
        return KernelSVC(
            kernel=self.kernel,
            C=self.C,
            gamma=self.gamma,
            degree=self.degree,
            coef0=self.coef0,
            class_weight=self.class_weight,
        )

    def _fit_rows(self, X: np.ndarray, rows: np.ndarray | None, y: np.ndarray) -> None:
        n = X.shape[0] if rows is None else len(rows)
        x_var, _ = row_stats(X, rows)
        self.gamma_ = scale_gamma(self.gamma, X.shape[1], x_var)
        m = min(int(self.n_components), n)
        picks = check_random_state(self.random_state).permutation(n)[:m]
        basis = float64_rows(X, picks if rows is None else rows[picks])
        self.nystroem_ = Nystroem(
            kernel=self.kernel,
            gamma=self.gamma_,
            degree=self.degree,
            coef0=self.coef0,
            n_components=m,
            random_state=self.random_state,
        ).fit(basis)
        Z = self._map(X, rows)
        self._fit_linear(Z, y, float(np.einsum("ij,ij->", Z, Z)) / max(n, 1))

    def _map(self, X: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """The Nyström features of ``X[rows]`` (float64, chunk by chunk)."""
        n = X.shape[0] if rows is None else len(rows)
        out = np.empty((n, self.nystroem_.n_components), dtype=np.float64)
        for i in range(0, n, CHUNK_ROWS):
            j = min(i + CHUNK_ROWS, n)
            chunk = X[i:j] if rows is None else X[rows[i:j]]
            out[i:j] = self.nystroem_.transform(np.asarray(chunk, dtype=np.float64))
        return out

    def fit(self, X: Any, y: Any) -> NystroemSVC:
        self.check_params()
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32))
        self._fit_rows(X, None, y)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """The fitted Nyström features of ``X`` (what the linear SVM sees)."""
        check_is_fitted(self, "svm_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self._map(X)

    def decision_function(self, X: Any) -> np.ndarray:
        return self.svm_.decision_function(self.transform(X))

    def predict(self, X: Any) -> np.ndarray:
        return self.svm_.predict(self.transform(X))

    # -- the fold fast path: the fold's rows are never copied whole ------------------------

    def fold_memory(self, context: CVContext, n_train: int, n_test: int) -> int:
        """Landmarks, one chunk's kernel and rows, the map of every row, liblinear's copy."""
        d, m = context.n_features, min(int(self.n_components), n_train)
        chunk = CHUNK_ROWS * (d + 2 * m) * F64
        mapped = (n_train + n_test) * m * F64 + n_train * (m + 2) * NODE_BYTES
        return (m * d + 3 * m * m) * F64 + chunk + mapped

    def fit_predict_fold(self, fold: FoldView, y_train: np.ndarray) -> FoldOutput:
        """``fit(X[train])`` + ``predict(X[test])`` without copying the fold's rows."""
        self.check_params()
        ctx = fold.context
        self.n_features_in_ = ctx.n_features
        self._fit_rows(ctx.X, fold.train, y_train)
        self._not_converged(ctx, f"Nyström {self.kernel!r} SVM (liblinear)")
        z_test = self._map(ctx.X, fold.test)
        return FoldOutput(
            pred=self.svm_.predict(z_test),
            classes=self.classes_,
            decision=self.svm_.decision_function(z_test),
        )
