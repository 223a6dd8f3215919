"""Shared Gram / distance computations for fast cross-validation.

Kernel methods (SVMs, nearest neighbours, LDA in the n << d regime) only need
inner products of the samples. Under k-fold CV every fold uses sub-blocks of
the same Gram matrix ``X X^T``, so it is computed once with one BLAS call
(:class:`SharedGram`) and sliced per fold (:class:`FoldKernels`). A
per-fold standardisation (``StandardScaler`` fitted on the fold's training
rows) changes the kernel per fold; it is then one GEMM per fold, shared by
every estimator of that fold.

An estimator takes the fast path by exposing
``fit_predict_fold(fold: FoldKernels, y_train) -> FoldOutput | None``
(``None`` = "use the ordinary fit/predict"). The engine never needs to know
which estimator it is.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from sklearn.preprocessing import StandardScaler


@dataclass
class FoldOutput:
    """What an estimator's ``predict``/``predict_proba``/``decision_function`` would give.

    ``pred`` holds class labels; ``proba`` is ``(n, len(classes))`` or None;
    ``decision`` is ``(n,)`` (binary) or ``(n, k)`` or None; ``classes`` are the
    fitted ``classes_``.
    """

    pred: np.ndarray
    classes: np.ndarray
    proba: np.ndarray | None = None
    decision: np.ndarray | None = None


def as_float64(X: np.ndarray) -> np.ndarray:
    """C-contiguous float64 view/copy of ``X`` (what scikit-learn's SVC works on)."""
    return np.ascontiguousarray(X, dtype=np.float64)


def linear_gram(A: np.ndarray, B: np.ndarray | None = None) -> np.ndarray:
    """``A @ B.T`` in float64 (``A @ A.T`` uses the symmetric BLAS routine)."""
    A = as_float64(A)
    if B is None:
        return A @ A.T
    return A @ as_float64(B).T


def squared_distances(gram_ab: np.ndarray, sq_a: np.ndarray, sq_b: np.ndarray) -> np.ndarray:
    """``||a - b||^2 = |a|^2 + |b|^2 - 2 a.b``, clipped at 0."""
    d = sq_a[:, None] + sq_b[None, :] - 2.0 * gram_ab
    np.maximum(d, 0.0, out=d)
    return d


def scale_gamma(gamma: float | str, n_features: int, x_var: float) -> float:
    """scikit-learn's ``gamma`` ('scale' = 1 / (n_features * X.var()), 'auto' = 1 / n_features)."""
    if gamma == "scale":
        return 1.0 / (n_features * x_var) if x_var != 0 else 1.0
    if gamma == "auto":
        return 1.0 / n_features
    return float(gamma)


def kernel_from_gram(
    kind: str,
    gram: np.ndarray,
    *,
    gamma: float,
    degree: int = 3,
    coef0: float = 0.0,
    sq_a: np.ndarray | None = None,
    sq_b: np.ndarray | None = None,
) -> np.ndarray:
    """libsvm's linear / poly / rbf / sigmoid kernel from linear inner products."""
    if kind == "linear":
        return gram
    if kind == "poly":
        base = gamma * gram + coef0
        return _powi(base, degree)
    if kind == "rbf":
        if sq_a is None or sq_b is None:
            raise ValueError("rbf kernel needs squared norms")
        return np.exp(-gamma * squared_distances(gram, sq_a, sq_b))
    if kind == "sigmoid":
        return np.tanh(gamma * gram + coef0)
    raise ValueError(f"unknown kernel {kind!r}")


def _powi(base: np.ndarray, times: int) -> np.ndarray:
    """``base ** times`` by repeated squaring, the same multiplications as libsvm's powi."""
    tmp = base
    ret = np.ones_like(base)
    t = int(times)
    while t > 0:
        if t % 2 == 1:
            ret = ret * tmp
        tmp = tmp * tmp
        t //= 2
    return ret


class SharedGram:
    """``X`` (float64) and its full Gram matrix, computed once on first use (thread-safe)."""

    def __init__(self, X: np.ndarray) -> None:
        self.X = as_float64(X)
        self._gram: np.ndarray | None = None
        self._sq: np.ndarray | None = None
        self._lock = threading.Lock()

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    def gram(self) -> np.ndarray:
        """``X @ X.T`` (n x n)."""
        with self._lock:
            if self._gram is None:
                self._gram = linear_gram(self.X)
                self._sq = np.einsum("ij,ij->i", self.X, self.X)
            return self._gram

    def sq_norms(self) -> np.ndarray:
        self.gram()
        assert self._sq is not None
        return self._sq


@dataclass
class _Block:
    """Linear kernel of (train + test) rows against train rows, plus norms and X.var()."""

    k_train: np.ndarray  # (n_train, n_train)
    k_test: np.ndarray  # (n_test, n_train)
    sq_train: np.ndarray
    sq_test: np.ndarray
    x_var: float


class FoldKernels:
    """One fold's view of the shared computations (thread-safe, cached per setting).

    ``block(standardize)`` returns the linear kernel blocks of the fold, with
    the features raw or standardised by a ``StandardScaler`` fitted on the
    fold's training rows (exactly as a ``Pipeline(StandardScaler(), ...)``).
    """

    def __init__(self, shared: SharedGram, train: np.ndarray, test: np.ndarray) -> None:
        self.shared = shared
        self.train = np.asarray(train)
        self.test = np.asarray(test)
        self._blocks: dict[bool, _Block] = {}
        self._lock = threading.Lock()

    @property
    def n_features(self) -> int:
        return self.shared.n_features

    def x_train(self) -> np.ndarray:
        return self.shared.X[self.train]

    def x_test(self) -> np.ndarray:
        return self.shared.X[self.test]

    def block(self, standardize: bool) -> _Block:
        with self._lock:
            if standardize not in self._blocks:
                self._blocks[standardize] = (
                    self._scaled_block() if standardize else self._raw_block()
                )
            return self._blocks[standardize]

    def _raw_block(self) -> _Block:
        g, sq = self.shared.gram(), self.shared.sq_norms()
        tr, te = self.train, self.test
        return _Block(
            k_train=np.ascontiguousarray(g[np.ix_(tr, tr)]),
            k_test=np.ascontiguousarray(g[np.ix_(te, tr)]),
            sq_train=sq[tr],
            sq_test=sq[te],
            x_var=float(self.x_train().var()),
        )

    def _scaled_block(self) -> _Block:
        scaler = StandardScaler().fit(self.x_train())
        xtr = scaler.transform(self.x_train())
        xte = scaler.transform(self.x_test())
        return _Block(
            k_train=linear_gram(xtr),
            k_test=linear_gram(xte, xtr),
            sq_train=np.einsum("ij,ij->i", xtr, xtr),
            sq_test=np.einsum("ij,ij->i", xte, xte),
            x_var=float(xtr.var()),
        )

    def release(self) -> None:
        """Drop the cached blocks (the fold is done)."""
        with self._lock:
            self._blocks.clear()
