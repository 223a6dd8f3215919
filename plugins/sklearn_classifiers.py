"""Builtin classifiers: the paper's six (Table 1) plus logistic regression and random forest.

The SVMs and 1-NN are ordinary scikit-learn estimators that compute their
kernel with one BLAS call instead of libsvm's per-pair loop, and expose
``fit_predict_fold`` so cross-validation can reuse one Gram matrix for all
folds (see :mod:`bench.kernels`). LDA works on the small side of the
problem when there are fewer samples than features. Each one's predictions
equal the plain scikit-learn estimator returned by ``reference()``.
See docs/classifiers.md for MATLAB's defaults and what was chosen here.
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
from typing import Any

import numpy as np
import scipy.linalg as sla
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.tree._tree import NODE_DTYPE, Tree
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from bench.errors import UserError
from bench.fast_tree import RAND_R_MAX, Presort, build_tree, shared_presort
from bench.hookspecs import hookimpl
from bench.kernels import (
    FoldKernels,
    FoldOutput,
    as_float64,
    kernel_from_gram,
    linear_gram,
    scale_gamma,
    squared_distances,
)
from bench.specs import ClassifierSpec

# -- estimators ------------------------------------------------------------------


class KernelSVC(ClassifierMixin, BaseEstimator):
    """``SVC`` with its kernel computed by BLAS (``kernel="precomputed"`` inside).

    Same parameters and predictions as ``SVC(kernel=...)`` (optionally after a
    ``StandardScaler`` when ``standardize=True``), see :meth:`reference`.
    ``coef0`` is the polynomial offset: ``(gamma * <x, z> + coef0) ** degree``.
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

    def check_params(self) -> None:
        """Raise ValueError on a parameter value SVC would reject."""
        if self.kernel not in ("linear", "poly", "rbf", "sigmoid"):
            raise ValueError(f"kernel must be linear, poly, rbf or sigmoid, not {self.kernel!r}")
        named = isinstance(self.gamma, str) and self.gamma in ("scale", "auto")
        if not named and (isinstance(self.gamma, str) or self.gamma <= 0):
            raise ValueError(f"gamma must be 'scale', 'auto' or > 0, not {self.gamma!r}")
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
        return kernel_from_gram(
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
        self.sq_fit_ = np.einsum("ij,ij->i", xf, xf)
        self.gamma_ = scale_gamma(self.gamma, xf.shape[1], float(xf.var()))
        k = self._kernel(linear_gram(xf), self.sq_fit_, self.sq_fit_, self.gamma_)
        self.svc_ = self._svc().fit(k, y)
        self.classes_ = self.svc_.classes_
        return self

    def _test_kernel(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "svc_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        xf = as_float64(self.scaler_.transform(X) if self.scaler_ is not None else X)
        sq = np.einsum("ij,ij->i", xf, xf)
        return self._kernel(linear_gram(xf, self.X_fit_), sq, self.sq_fit_, self.gamma_)

    def decision_function(self, X: Any) -> np.ndarray:
        return self.svc_.decision_function(self._test_kernel(X))

    def predict(self, X: Any) -> np.ndarray:
        return self.svc_.predict(self._test_kernel(X))

    def fit_predict_fold(self, fold: FoldKernels, y_train: np.ndarray) -> FoldOutput | None:
        """Fit on the fold's shared kernel block and predict its test rows."""
        self.check_params()
        b = fold.block(bool(self.standardize))
        gamma = scale_gamma(self.gamma, fold.n_features, b.x_var)
        k_train = self._kernel(b.k_train, b.sq_train, b.sq_train, gamma)
        k_test = self._kernel(b.k_test, b.sq_test, b.sq_train, gamma)
        svc = self._svc().fit(k_train, y_train)
        return FoldOutput(
            pred=svc.predict(k_test),
            classes=svc.classes_,
            decision=svc.decision_function(k_test),
        )


class EuclideanKNN(ClassifierMixin, BaseEstimator):
    """k-nearest neighbours (Euclidean, uniform votes) from BLAS inner products.

    Same predictions as ``KNeighborsClassifier(n_neighbors, algorithm="brute")``
    (after a ``StandardScaler`` when ``standardize=True``), see :meth:`reference`.
    ``random_state`` is accepted for uniformity and unused (1-NN is deterministic).
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
        self.sq_fit_ = np.einsum("ij,ij->i", xf, xf)
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
        sq = np.einsum("ij,ij->i", xf, xf)
        d2 = squared_distances(linear_gram(xf, self.X_fit_), sq, self.sq_fit_)
        return self._votes(d2, self.y_fit_, len(self.classes_))

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def fit_predict_fold(self, fold: FoldKernels, y_train: np.ndarray) -> FoldOutput | None:
        """Neighbours of the fold's test rows from the shared Gram block."""
        self.check_params()
        b = fold.block(bool(self.standardize))
        classes, y_fit = np.unique(y_train, return_inverse=True)
        d2 = squared_distances(b.k_test, b.sq_test, b.sq_train)
        proba = self._votes(d2, y_fit, len(classes))
        return FoldOutput(pred=classes[np.argmax(proba, axis=1)], classes=classes, proba=proba)


def _lda_fac_is_1_over_n() -> bool:
    """Whether this scikit-learn's svd solver scales by 1/n (newer) or 1/(n - k) (older)."""
    try:
        src = inspect.getsource(LinearDiscriminantAnalysis._solve_svd)
    except (OSError, TypeError):  # pragma: no cover - no sources installed
        return True
    return "1.0 / (n_samples - n_classes)" not in src


_LDA_FAC_IS_1_OVER_N = _lda_fac_is_1_over_n()


class ExactTree(DecisionTreeClassifier):
    """``DecisionTreeClassifier`` whose best-first Gini trees are grown by :mod:`bench.fast_tree`.

    With ``criterion="gini"``, ``splitter="best"``, ``max_features=None`` and
    ``max_leaf_nodes`` set (and no ``class_weight``, ``sample_weight``,
    ``monotonic_cst``, ``min_weight_fraction_leaf`` or ``ccp_alpha``), every
    feature is sorted once and each node's splits are scored with whole-array
    numpy operations: several times faster on 4,096-D features, and the tree -
    features, thresholds, impurities, values, node for node - is the one
    scikit-learn grows (:meth:`reference`). Anything else is fitted by
    scikit-learn itself on a column-major float32 copy. Under cross-validation
    (``fit_predict_fold``) one presort of all rows serves every fold.
    """

    def reference(self) -> DecisionTreeClassifier:
        return DecisionTreeClassifier(**self.get_params())

    def fast_path_supported(self) -> bool:
        """Whether :mod:`bench.fast_tree` reproduces this parameter combination."""
        return (
            self.criterion == "gini"
            and self.splitter == "best"
            and self.max_features is None
            and self.max_leaf_nodes is not None
            and self.class_weight is None
            and self.monotonic_cst is None
            and self.min_weight_fraction_leaf == 0.0
            and self.ccp_alpha == 0.0
        )

    def fit(self, X: Any, y: Any, sample_weight: Any = None, check_input: bool = True):
        if sample_weight is None and check_input and not hasattr(X, "tocsc"):
            self._validate_params()
            if self.fast_path_supported():
                X32, y_arr = validate_data(
                    self,
                    X,
                    y,
                    validate_separately=(
                        {"dtype": np.float32, "ensure_all_finite": False},
                        {"ensure_2d": False, "dtype": None},
                    ),
                )
                y_arr = np.atleast_1d(y_arr)
                if (y_arr.ndim == 1 or y_arr.shape[1] == 1) and np.isfinite(X32).all():
                    self._fit_fast(Presort(X32), None, y_arr.reshape(-1))
                    return self
        if check_input and not hasattr(X, "tocsc"):
            X = np.asfortranarray(X, dtype=np.float32)
        return super().fit(X, y, sample_weight=sample_weight, check_input=check_input)

    def _fit_fast(self, presort: Presort, rows: np.ndarray | None, y: np.ndarray) -> None:
        """Fit on ``presort.X[rows]`` (all rows when None) with :func:`bench.fast_tree.build_tree`."""
        check_classification_targets(y)
        classes, y_enc = np.unique(y, return_inverse=True)
        n, d = len(y), presort.n_features
        msl = self.min_samples_leaf
        if not isinstance(msl, numbers.Integral):
            msl = math.ceil(msl * n)
        mss = self.min_samples_split
        if not isinstance(mss, numbers.Integral):
            mss = max(2, math.ceil(mss * n))
        mss = max(mss, 2 * msl)
        random_state = check_random_state(self.random_state)
        arrays = build_tree(
            presort,
            y_enc,
            len(classes),
            rows=rows,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_split=mss,
            min_samples_leaf=msl,
            max_depth=np.iinfo(np.int32).max if self.max_depth is None else self.max_depth,
            min_impurity_decrease=self.min_impurity_decrease,
            rand_r_state=int(random_state.randint(0, RAND_R_MAX)),
        )
        nodes = np.empty(len(arrays.feature), dtype=NODE_DTYPE)
        for name in NODE_DTYPE.names:
            nodes[name] = getattr(arrays, name)
        tree = Tree(d, np.array([len(classes)], dtype=np.intp), 1)
        tree.__setstate__(
            {
                "max_depth": arrays.max_depth,
                "node_count": len(nodes),
                "nodes": nodes,
                "values": np.ascontiguousarray(arrays.value),
            }
        )
        self.n_features_in_ = d
        self.n_outputs_ = 1
        self.classes_ = classes
        self.n_classes_ = len(classes)
        self.max_features_ = d
        self.tree_ = tree

    def fit_predict_fold(self, fold: FoldKernels, y_train: np.ndarray) -> FoldOutput | None:
        """Fit on the fold's rows of one presort shared by all folds; None -> generic path."""
        self._validate_params()
        if not self.fast_path_supported():
            return None
        try:
            presort = shared_presort(fold.shared, fold.shared.X)
        except ValueError:  # non-finite features: scikit-learn's own handling
            return None
        self._fit_fast(presort, fold.train, np.asarray(y_train))
        x_test = fold.x_test()
        return FoldOutput(
            pred=self.predict(x_test), classes=self.classes_, proba=self.predict_proba(x_test)
        )


ColumnMajorTree = ExactTree  # former name


class SmallSideLDA(ClassifierMixin, BaseEstimator):
    """Linear discriminant analysis, scikit-learn's ``solver="svd"`` solved on the small side.

    With fewer samples than features, the SVD of the (within-class centred,
    scaled) n x d training matrix is replaced by a Cholesky factorisation of
    its n x n Gram matrix with the k known null directions (class indicators)
    filled in: the same pseudo-inverse discriminant, several times faster.
    When that Gram matrix is too ill-conditioned to reproduce scikit-learn's
    rank cut (``tol``), or with ``n >= d`` / ``shrinkage``, it falls back to
    :class:`~sklearn.discriminant_analysis.LinearDiscriminantAnalysis` itself.
    ``random_state`` is accepted for uniformity and unused.
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

    def fit(self, X: Any, y: Any) -> SmallSideLDA:
        self.check_params()
        X, y = validate_data(self, X, y, dtype=np.float64)
        self.classes_ = np.unique(y)
        n, d = X.shape
        self.method_ = "sklearn"
        if (
            self.solver == "svd"
            and self.shrinkage is None
            and n - len(self.classes_) < d
            and len(self.classes_) > 1
            and self._fit_small(X, y)
        ):
            self.method_ = "small-side"
            return self
        lda = self.reference().fit(X, y)
        self.coef_, self.intercept_ = lda.coef_, lda.intercept_
        return self

    def _fit_small(self, X: np.ndarray, y: np.ndarray) -> bool:
        """The svd solver's discriminant via an n x n Cholesky; False if not safe.

        The Gram matrix and its Cholesky factor are computed in float32 (half
        the cost) and only precondition the solves, which are refined against
        the exact float64 operator; when float32 is not accurate enough for
        that (or for the conditioning check), the Gram is recomputed in float64.
        """
        classes, yi = np.unique(y, return_inverse=True)
        k = len(classes)
        n = X.shape[0]
        counts = np.bincount(yi, minlength=k).astype(float)
        priors = counts / n if self.priors is None else np.asarray(self.priors, dtype=float)
        priors = priors / priors.sum()
        means = np.stack([X[yi == c].mean(axis=0) for c in range(k)])
        xc = X - means[yi]
        std = xc.std(axis=0)
        std[std == 0] = 1.0
        xc *= math.sqrt(1.0 / (n if _LDA_FAC_IS_1_OVER_N else n - k)) / std
        xw = xc
        indicators = np.zeros((n, k))
        indicators[np.arange(n), yi] = 1.0 / np.sqrt(counts[yi])
        xbar = priors @ means
        centred = (means - xbar) / std  # D^-1 (m_c - xbar), k x d
        rhs = xw @ centred.T
        z = self._solve_twice_f32(xw, indicators, rhs)
        if z is None:
            z = self._solve_twice_f64(xw, indicators, rhs)
        if z is None:
            return False
        w = xw.T @ z  # pinv(Xw^T Xw) D^-1 (m_c - xbar)
        coef = (w / std[:, None]).T
        quad = np.sum(centred * w.T, axis=1)
        intercept = -0.5 * quad + np.log(priors) - coef @ xbar
        if k == 2:
            coef = (coef[1] - coef[0])[None, :]
            intercept = np.array([intercept[1] - intercept[0]])
        self.coef_, self.intercept_ = coef, intercept
        return True

    def _well_conditioned(self, lam_min: float) -> bool:
        """Whether the Gram's smallest eigenvalue clears sklearn's rank cut (100x tol^2)."""
        return lam_min > 100 * self.tol**2

    def _solve_twice_f64(self, xw, indicators, rhs) -> np.ndarray | None:
        """``G^-2 rhs`` with the float64 Gram ``G``; None if G is too ill-conditioned."""
        n = xw.shape[0]
        gram = xw @ xw.T
        alpha = float(np.trace(gram)) / n or 1.0
        gram += alpha * (indicators @ indicators.T)
        try:
            chol = np.linalg.cholesky(gram)
        except np.linalg.LinAlgError:
            return None
        anorm = float(np.abs(gram).sum(axis=0).max())
        rcond, info = sla.lapack.dpocon(chol, anorm, uplo="L")
        # lambda_min >= ~rcond * ||A||_1 (estimate, allow 10x).
        if info != 0 or not self._well_conditioned(rcond * anorm / 10):
            return None
        return sla.cho_solve((chol, True), sla.cho_solve((chol, True), rhs, check_finite=False))

    def _solve_twice_f32(self, xw, indicators, rhs) -> np.ndarray | None:
        """``G^-2 rhs`` from a float32 Cholesky refined with the float64 operator, or None."""
        n, d = xw.shape
        x32 = xw.astype(np.float32)
        gram = x32 @ x32.T
        del x32
        sq = np.einsum("ij,ij->i", xw, xw)
        alpha = float(sq.sum()) / n or 1.0
        gram += np.float32(alpha) * (indicators @ indicators.T).astype(np.float32)
        anorm = float(np.abs(gram).sum(axis=0).max())
        chol, info = sla.lapack.spotrf(gram, lower=1, clean=1, overwrite_a=1)
        if info != 0:
            return None
        rcond, info = sla.lapack.spocon(chol, anorm, uplo="L")
        if info != 0:
            return None

        def apply(v: np.ndarray) -> np.ndarray:
            return xw @ (xw.T @ v) + alpha * (indicators @ (indicators.T @ v))

        def precond(r: np.ndarray) -> np.ndarray:
            out, _ = sla.lapack.spotrs(chol, r.astype(np.float32), lower=1)
            return out.astype(np.float64)

        first = self._refine(apply, precond, rhs)
        if first is None:
            return None
        z, rho = first
        # rho ~ |I - (L L^T)^-1 G|, so lambda_min(G) >= (1 - rho) lambda_min(L L^T);
        # lambda_min(L L^T) >= ~rcond * ||A||_1 (estimate, allow 10x); count rho twice.
        if rho >= 0.25 or not self._well_conditioned((1 - 2 * rho) * rcond * anorm / 10):
            return None
        second = self._refine(apply, precond, z)
        return None if second is None else second[0]

    @staticmethod
    def _refine(apply, precond, b: np.ndarray, max_iter: int = 30):
        """Iterative refinement of ``A x = b``: ``(x, contraction)``, or None if it stalls.

        ``contraction`` is the relative size of the first correction, an
        estimate of ``|I - P^-1 A|`` for the preconditioner ``P``.
        """
        x = precond(b)
        rho = prev = math.inf
        for _ in range(max_iter):
            dx = precond(b - apply(x))
            x += dx
            step = float(np.abs(dx).max()) / (float(np.abs(x).max()) or 1.0)
            if rho == math.inf:
                rho = step
            if step < 1e-15 or (step > 0.5 * prev and step < 1e-13):
                return x, rho  # at float64 rounding level
            if step > prev:
                return None
            prev = step
        return None

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


# -- factories --------------------------------------------------------------------


def _close(name: str, valid: set[str]) -> list[str]:
    """Closest valid option names (case-insensitive)."""
    lower = {v.lower(): v for v in valid}
    return [lower[m] for m in difflib.get_close_matches(name.lower(), sorted(lower), n=1)]


def build(name: str, cls: type, defaults: dict[str, Any], options: dict[str, Any]) -> Any:
    """``cls(**defaults, **options)``; unknown option names or bad values -> UserError."""
    valid = set(cls().get_params())
    bad = sorted(set(options) - valid)
    if bad:
        hints = "".join(f" ({b!r}: did you mean {m[0]!r}?)" for b in bad if (m := _close(b, valid)))
        raise UserError(
            f"classifier {name!r}: unknown option(s) {', '.join(map(repr, bad))}{hints}; "
            f"valid options: {', '.join(sorted(valid))}"
        )
    estimator = cls(**{**defaults, **options})
    try:
        if hasattr(estimator, "check_params"):
            estimator.check_params()
        elif hasattr(estimator, "_validate_params"):
            estimator._validate_params()
    except (ValueError, TypeError) as exc:
        raise UserError(f"classifier {name!r}: bad option value: {exc}") from exc
    return estimator


def reference_estimator(estimator: Any) -> Any:
    """The plain scikit-learn estimator a builtin one reproduces (itself if none)."""
    ref = getattr(estimator, "reference", None)
    return ref() if callable(ref) else estimator


def _factory(name: str, cls: type, **defaults: Any):
    def factory(**options: Any) -> Any:
        return build(name, cls, defaults, options)

    factory.__name__ = f"build_{name.replace('-', '_')}"
    factory.__doc__ = f"A fresh {cls.__name__} for classifier {name!r} (defaults {defaults})."
    return factory


_SPECS = [
    (
        "dt",
        "Decision Tree",
        True,
        "CART decision tree, at most 20 splits (MATLAB MaxNumSplits=20 -> max_leaf_nodes=21), Gini",
        _factory("dt", ExactTree, max_leaf_nodes=21, random_state=0),
    ),
    (
        "lda",
        "Linear Discriminant",
        True,
        "linear discriminant (pooled covariance, pseudo-inverse via scikit-learn's svd solver)",
        _factory("lda", SmallSideLDA),
    ),
    (
        "svm-linear",
        "SVM (linear)",
        True,
        "SVM, linear kernel, C=1",
        _factory("svm-linear", KernelSVC, kernel="linear"),
    ),
    (
        "svm-gaussian",
        "SVM (Gaussian)",
        True,
        "SVM, Gaussian (RBF) kernel, C=1, gamma='scale'",
        _factory("svm-gaussian", KernelSVC, kernel="rbf"),
    ),
    (
        "svm-cubic",
        "SVM (cubic)",
        True,
        "SVM, cubic polynomial kernel (gamma <x,z> + 1)^3, C=1, gamma='scale'",
        _factory("svm-cubic", KernelSVC, kernel="poly", degree=3, coef0=1.0),
    ),
    (
        "knn1",
        "1-NN",
        True,
        "1-nearest neighbour, Euclidean distance",
        _factory("knn1", EuclideanKNN, n_neighbors=1),
    ),
    (
        "logreg",
        "Logistic Regression",
        False,
        "L2 logistic regression (lbfgs, C=1, max_iter=2000)",
        _factory("logreg", LogisticRegression, max_iter=2000, random_state=0),
    ),
    (
        "rf",
        "Random Forest",
        False,
        "random forest, 200 trees, sqrt(d) features per split",
        _factory("rf", RandomForestClassifier, n_estimators=200, random_state=0, n_jobs=1),
    ),
]


@hookimpl
def leukobench_classifiers() -> list[ClassifierSpec]:
    """The paper's six classifiers plus logistic regression and random forest."""
    return [
        ClassifierSpec(name=n, factory=f, description=desc, paper_label=label, in_paper=paper)
        for n, label, paper, desc, f in _SPECS
    ]


__all__ = [
    "ColumnMajorTree",
    "EuclideanKNN",
    "ExactTree",
    "KernelSVC",
    "SmallSideLDA",
    "build",
    "leukobench_classifiers",
    "reference_estimator",
]
