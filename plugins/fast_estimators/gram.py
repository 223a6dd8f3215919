"""Gram and distance products shared by the kernel SVMs and 1-NN under cross-validation.

Kernel methods only need inner products of the samples. Under k-fold CV every
fold uses sub-blocks of the same Gram matrix ``X X^T``, so it is computed
once per run (:func:`shared_gram`), in float64 (what libsvm computes kernels
in), in blocks of rows run on the run's ``n_jobs`` threads (or on the GPU when
the run's device is CUDA, see :mod:`.products`), exactly symmetric. A fold
takes its train x train block as one private copy, which its kernel
(``rbf``, ``poly``, ...) then overwrites in place: one n_train^2 array per
running fit, never a copy of the whole matrix.

When the Gram matrix does not fit the run's memory budget, each fold computes
its own kernel block from the features (same numbers, more products), and
when even that does not fit, the SVMs fall back to libsvm's own kernel cache
(:class:`sklearn.svm.SVC` on the features). Each fallback says so once.
A per-fold standardisation (``StandardScaler`` fitted on the fold's training
rows, as in ``Pipeline(StandardScaler(), ...)``) changes the kernel per fold:
it is one product per fold, shared by every estimator of that fold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.preprocessing import StandardScaler

from bench.fold_fastpath import CVContext, FoldView
from bench.memory_budget import format_bytes
from plugins.fast_estimators.products import products_for
from plugins.fast_estimators.svm_replay import REPLAY_MAX_ROWS, REPLAY_MIN_ROWS, replay_bytes

F64 = 8  # bytes per float64


def as_float64(X: np.ndarray) -> np.ndarray:
    """C-contiguous float64 view/copy of ``X`` (what scikit-learn's SVC works on)."""
    return np.ascontiguousarray(X, dtype=np.float64)


def sq_norms(X: np.ndarray) -> np.ndarray:
    """Row-wise ``|x|^2``."""
    return np.einsum("ij,ij->i", X, X)


def linear_gram(A: np.ndarray, B: np.ndarray | None = None) -> np.ndarray:
    """``A @ B.T`` in float64 (``A @ A.T`` uses the symmetric BLAS routine)."""
    A = as_float64(A)
    if B is None:
        return A @ A.T
    return A @ as_float64(B).T


def squared_distances(gram_ab: np.ndarray, sq_a: np.ndarray, sq_b: np.ndarray) -> np.ndarray:
    """``||a - b||^2 = |a|^2 + |b|^2 - 2 a.b``, clipped at 0 (a new array)."""
    d = sq_a[:, None] + sq_b[None, :] - 2.0 * gram_ab
    np.maximum(d, 0.0, out=d)
    return d


def check_gamma(gamma: float | str) -> None:
    """Raise ValueError unless ``gamma`` is 'scale', 'auto' or a positive number (as SVC)."""
    named = isinstance(gamma, str) and gamma in ("scale", "auto")
    if not named and (isinstance(gamma, str) or not gamma > 0):
        raise ValueError(f"gamma must be 'scale', 'auto' or > 0, not {gamma!r}")


def scale_gamma(gamma: float | str, n_features: int, x_var: float) -> float:
    """scikit-learn's ``gamma`` ('scale' = 1 / (n_features * X.var()), 'auto' = 1 / n_features)."""
    if gamma == "scale":
        return 1.0 / (n_features * x_var) if x_var != 0 else 1.0
    if gamma == "auto":
        return 1.0 / n_features
    return float(gamma)


def kernel_in_place(
    kind: str,
    gram: np.ndarray,
    *,
    gamma: float,
    degree: int = 3,
    coef0: float = 0.0,
    sq_a: np.ndarray | None = None,
    sq_b: np.ndarray | None = None,
    rows_per_chunk: int = 16,
) -> np.ndarray:
    """libsvm's linear / poly / rbf / sigmoid kernel from linear inner products, overwriting ``gram``.

    Row chunk by row chunk (one chunk-sized scratch; rbf and cubic write in place), with
    the same operations in the same order as :func:`kernel_from_gram`, so the values are
    identical (``1.0 * x`` is exact: the cubic needs no array of ones). Chunks of 16 rows
    keep the rbf's six passes in the L2 cache: 3.5x faster than 256 at 2,892 columns.
    """
    if kind == "linear":
        return gram
    if kind not in ("poly", "rbf", "sigmoid"):
        raise ValueError(f"unknown kernel {kind!r}")
    if kind == "rbf" and (sq_a is None or sq_b is None):
        raise ValueError("rbf kernel needs squared norms")
    scratch = np.empty((min(rows_per_chunk, gram.shape[0]), gram.shape[1]))
    for start in range(0, gram.shape[0], rows_per_chunk):
        stop = start + rows_per_chunk
        chunk = gram[start:stop]
        spare = scratch[: len(chunk)]
        if kind == "rbf":  # exp(-gamma * max(|a|^2 + |b|^2 - 2 a.b, 0))
            np.multiply(chunk, 2.0, out=chunk)
            np.add(sq_a[start:stop, None], sq_b[None, :], out=spare)
            np.subtract(spare, chunk, out=chunk)
            np.maximum(chunk, 0.0, out=chunk)
            np.multiply(chunk, -gamma, out=chunk)
            np.exp(chunk, out=chunk)
        elif kind == "poly" and degree == 3:  # base * (base * base), as libsvm's powi
            np.multiply(chunk, gamma, out=chunk)
            np.add(chunk, coef0, out=chunk)
            np.multiply(chunk, chunk, out=spare)
            np.multiply(chunk, spare, out=chunk)
        else:
            sq = sq_a[start:stop] if sq_a is not None else None
            chunk[...] = kernel_from_gram(
                kind, chunk, gamma=gamma, degree=degree, coef0=coef0, sq_a=sq, sq_b=sq_b
            )
    return gram


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
    """libsvm's linear / poly / rbf / sigmoid kernel from linear inner products (a new array)."""
    if kind == "linear":
        return gram
    if kind == "poly":
        return _powi(gamma * gram + coef0, degree)
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


# -- what a run shares -------------------------------------------------------------------


def shared_x64(context: CVContext) -> np.ndarray:
    """The run's features as C-contiguous float64 (one copy per run, accounted in the budget)."""

    def make() -> np.ndarray:
        x = as_float64(context.X)
        if x is not context.X:
            context.budget.take(x.nbytes)
        return x

    return context.shared("x64", make)


def shared_sq(context: CVContext) -> np.ndarray:
    return context.shared("sq64", lambda: sq_norms(shared_x64(context)))


def gram_bytes(context: CVContext) -> int:
    return context.n_samples**2 * F64


def x64_bytes(context: CVContext) -> int:
    return 0 if context.X.dtype == np.float64 else context.X.size * F64


def largest_fold(context: CVContext) -> tuple[int, int]:
    """``(n_train, n_test)`` of the fold with the most training rows."""
    return max(((len(tr), len(te)) for tr, te in context.folds), default=(0, 0))


def svm_fold_bytes(
    n_train: int, n_test: int, n_features: int, cache_mb: float, *, var_copy: bool = True
) -> int:
    """One SVM fold fit: its kernel block, test block, libsvm's cache (and X.var()'s copy).

    libsvm's cache holds float32 kernel rows, at most ``cache_size`` MB and at most all of
    them; the libsvm replay (:mod:`.svm_replay`) a compacted float32 block instead.
    """
    cache = min(int(cache_mb * 2**20), n_train * n_train * 4)
    if REPLAY_MIN_ROWS <= n_train <= REPLAY_MAX_ROWS:
        cache = max(cache, replay_bytes(n_train))
    own = (n_train * n_train + 2 * n_test * n_train) * F64 + cache
    return max(own, 2 * n_train * n_features * F64) if var_copy else own


def gram_fits(context: CVContext) -> bool:
    """Whether the whole Gram matrix fits the budget next to one fold fit."""
    n_train, n_test = largest_fold(context)
    need = (
        context.X.nbytes
        + x64_bytes(context)
        + gram_bytes(context)
        + svm_fold_bytes(n_train, n_test, context.n_features, 200)
    )
    return need <= context.memory_limit


def use_gram(context: CVContext) -> bool:
    """:func:`gram_fits`, decided once per run (with a one-line note when it does not)."""

    def decide() -> bool:
        fits = gram_fits(context)
        if not fits:
            context.note(
                f"note: the {context.n_samples:,} x {context.n_samples:,} Gram matrix "
                f"({format_bytes(gram_bytes(context))}) does not fit memory_limit "
                f"{format_bytes(context.memory_limit)}; kernels are computed per fold (slower)"
            )
        return fits

    return context.shared("gram-fits", decide)


def shared_gram(context: CVContext) -> np.ndarray:
    """``X @ X.T`` in float64, computed once per run (products per :func:`products_for`)."""

    def make() -> np.ndarray:
        x = shared_x64(context)
        context.budget.take(gram_bytes(context))
        return products_for(context).gram(x)

    return context.shared("gram", make)


@dataclass
class Block:
    """A fold's linear kernel: train x train (private, writable), test x train, norms, X.var()."""

    k_train: np.ndarray
    k_test: np.ndarray
    sq_train: np.ndarray
    sq_test: np.ndarray
    x_var: float


#: From this many feature values, ``X_train.var()`` is replayed in place (no copy of the rows).
REPLAY_MIN_VALUES = 1 << 20


def var_copies(context: CVContext) -> bool:
    """Whether :func:`fold_x_var` copies each fold's rows (small data, or a numpy it cannot replay).

    Large data imports numba (:mod:`.pairwise_var`); small data never does. (Memory
    estimates always count the copy: they are made before this is known.)
    """
    if context.X.size < REPLAY_MIN_VALUES:
        return True
    from plugins.fast_estimators.pairwise_var import replay_matches_numpy

    return not replay_matches_numpy()


def fold_x_var(fold: FoldView) -> float:
    """``X_train.var()`` in float64, as SVC's ``gamma='scale'`` computes it.

    Computed for every fold at once by the first fit that needs it: on large data by
    replaying numpy's summation over the fold's rows in place
    (:func:`.pairwise_var.rows_var`), else into one reused buffer (:func:`rows_var`),
    so its copy never coincides with the kernel blocks of later fits.
    """
    ctx = fold.context

    def every_fold() -> list[float]:
        x = shared_x64(ctx)
        if not var_copies(ctx):
            from plugins.fast_estimators import pairwise_var

            return [pairwise_var.rows_var(x, train) for train, _ in ctx.folds]
        buf = np.empty((largest_fold(ctx)[0], x.shape[1]))
        return [rows_var(x, train, buf) for train, _ in ctx.folds]

    return ctx.shared("x-var", every_fold)[fold.index]


def rows_var(x: np.ndarray, rows: np.ndarray, buf: np.ndarray) -> float:
    """``x[rows].var()`` bit for bit (numpy's ``_var``: sum, divide, subtract, square,
    sum, divide), computed in ``buf`` (at least ``len(rows)`` rows) instead of new arrays."""
    part = buf[: len(rows)]
    np.take(x, rows, axis=0, out=part, mode="clip")  # unbuffered
    count = part.size
    mean = np.add.reduce(part, axis=None, keepdims=True)
    np.true_divide(mean, count, out=mean)
    np.subtract(part, mean, out=part)
    np.square(part, out=part)
    total = np.add.reduce(part, axis=None)
    return float(total.dtype.type(total / count))


def sub_block(g: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``g[np.ix_(rows, cols)]``, copied a row at a time: the same values, 1.2-1.7x faster."""
    out = np.empty((len(rows), len(cols)), dtype=g.dtype)
    for i, row in enumerate(rows):
        np.take(g[row], cols, out=out[i], mode="clip")
    return out


def float32_block(
    fold: FoldView,
    apply: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    rows_per_chunk: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """The fold's train x train kernel from the shared Gram as float32 - all that libsvm's
    solver reads of it - and its float64 diagonal, ``rows_per_chunk`` rows at a time.

    ``apply(chunk, sq_rows, sq_train)`` turns a float64 chunk of linear products into
    kernel values in place (:func:`kernel_in_place`); elementwise, so each value is the
    one the whole float64 block would hold, rounded once. Half the bytes of that block,
    written once.
    """
    ctx = fold.context
    g = shared_gram(ctx)
    tr = fold.train
    sq = shared_sq(ctx)[tr]
    n = len(tr)
    out = np.empty((n, n), np.float32)
    diagonal = np.empty(n)
    part = np.empty((min(rows_per_chunk, n), n))
    for start in range(0, n, rows_per_chunk):
        stop = min(start + rows_per_chunk, n)
        chunk = part[: stop - start]
        for i, row in enumerate(tr[start:stop]):
            np.take(g[row], tr, out=chunk[i], mode="clip")
        apply(chunk, sq[start:stop], sq)
        diagonal[start:stop] = chunk[np.arange(stop - start), np.arange(start, stop)]
        out[start:stop] = chunk
    return out, diagonal


def raw_block(fold: FoldView, *, need_var: bool) -> Block:
    """The fold's raw linear kernel, from the shared Gram or (when it does not fit) from products."""
    ctx = fold.context
    tr, te = fold.train, fold.test
    sq = shared_sq(ctx)
    x_var = fold_x_var(fold) if need_var else float("nan")
    if use_gram(ctx):
        g = shared_gram(ctx)
        return Block(sub_block(g, tr, tr), sub_block(g, te, tr), sq[tr], sq[te], x_var)
    x = shared_x64(ctx)
    products = products_for(ctx)
    x_train = x[tr]
    return Block(products.gram(x_train), products.cross(x[te], x_train), sq[tr], sq[te], x_var)


def scaled_block(fold: FoldView) -> Block:
    """The fold's kernel after a ``StandardScaler`` fitted on its training rows (once per fold).

    The shared block's ``k_train`` must not be overwritten: callers copy it.
    """

    def make() -> Block:
        x = shared_x64(fold.context)
        xtr = x[fold.train]
        scaler = StandardScaler().fit(xtr)
        xtr = scaler.transform(xtr)
        xte = scaler.transform(x[fold.test])
        products = products_for(fold.context)
        return Block(
            k_train=products.gram(xtr),
            k_test=products.cross(xte, xtr),
            sq_train=sq_norms(xtr),
            sq_test=sq_norms(xte),
            x_var=float(xtr.var()),
        )

    return fold.shared("scaled-block", make)


def fold_block(fold: FoldView, standardize: bool, *, need_var: bool = True) -> Block:
    """The fold's linear kernel block with a private, writable ``k_train``."""
    if not standardize:
        return raw_block(fold, need_var=need_var)
    b = scaled_block(fold)
    return Block(b.k_train.copy(), b.k_test.copy(), b.sq_train, b.sq_test, b.x_var)


def test_block(fold: FoldView, standardize: bool) -> Block:
    """Only what 1-NN needs: test x train products and norms (``k_train`` empty)."""
    if standardize:
        b = scaled_block(fold)
        return Block(np.empty((0, 0)), b.k_test, b.sq_train, b.sq_test, b.x_var)
    ctx = fold.context
    tr, te = fold.train, fold.test
    sq = shared_sq(ctx)
    if use_gram(ctx):
        k_test = sub_block(shared_gram(ctx), te, tr)
    else:
        k_test = products_for(ctx).cross_rows(shared_x64(ctx), te, tr)
    return Block(np.empty((0, 0)), k_test, sq[tr], sq[te], float("nan"))
