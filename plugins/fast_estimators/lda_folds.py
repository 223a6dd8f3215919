"""Every fold's n-side discriminant at once: one shared preconditioner, batched conjugate gradients.

With fewer samples than features, each fold's discriminant needs ``G_f^-2 b_f``
for the fold's n x n Gram ``G_f = Xw_f Xw_f^T`` (:mod:`.lda_solvers`). Forming
and factorising ``G_f`` costs an n x n x d product per fold, and no fold can
reuse another's: the scaling ``D_f`` (the fold's within-class standard
deviations) differs. But it differs only a little, and in one direction:

* the run's Gram ``G_0`` (all rows, the run's class means and deviations) is
  formed and inverted once (float32: it only preconditions);
* for any fold, on the directions orthogonal to the class indicators,
  ``G_f >= G_0[T, T]`` (``T``: the fold's training rows), because a fold's
  within-class sum of squares never exceeds the run's, feature by feature.
  So ``lambda_min(G_f) >= lambda_min(G_0)``: one condition check for all folds;
* ``G_0[T, T]^-1`` comes from ``G_0^-1`` by a Schur complement on the fold's
  test rows (a |S| x |S| factorisation), and preconditions conjugate gradients
  on the exact float64 operator ``G_f`` (applied through ``X``). The folds'
  operators and preconditioners are applied together, one product with ``X``
  (or ``G_0^-1``) for all folds' columns: ``X`` is read once per iteration.

A fold that this cannot vouch for (a feature constant within every class on
its training rows but not zero, a solve that does not converge) gets None and
is solved on its own (:func:`.lda_solvers.solve_n_side`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.linalg as sla

from plugins.fast_estimators.fold_blocks import ClassStats, fold_stats
from plugins.fast_estimators.lda_solvers import cholesky_f32, mirror_lower, well_conditioned

_ROWS = 512  # rows per chunk when centring X
_MAX_ITER = 100
_RTOL = 1e-15  # relative residual at which a column is converged
_ACCEPT = 1e-12  # largest true relative residual accepted at the end
_MIN_RCOND = 1e-6  # the run's Gram: below this reciprocal condition, no shared solve
_FLAT_SS = 1e-8  # within-class sum of squares below this x the raw one (x^2): not trusted


def free_classes(priors: np.ndarray) -> tuple[np.ndarray, int]:
    """``(free, j)``: the classes to solve for, and the one (largest prior) that follows.

    ``sum_c p_c D^-1 (m_c - xbar) = 0`` (``xbar = sum_c p_c m_c``), so the k
    right-hand sides of a fold span k - 1 dimensions and so do its k columns of
    ``w``: only k - 1 are solved, the last is :func:`complete_w`'s combination.
    """
    j = int(np.argmax(priors))
    return np.delete(np.arange(len(priors)), j), j


def complete_w(w_free: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """All k columns of ``w`` from the k - 1 solved ones (:func:`free_classes`)."""
    free, j = free_classes(priors)
    w = np.empty((w_free.shape[0], len(priors)))
    w[:, free] = w_free
    w[:, j] = -(w_free @ priors[free]) / priors[j]
    return w


def n_side_bytes(n: int, d: int, width: int, schur: int = 0) -> int:
    """Peak bytes of :func:`n_side_folds` beyond ``x64``.

    ``width`` = folds x classes; ``schur`` = the sum of the folds' squared
    held-out sizes (their Schur blocks, float64).
    """
    return n * d * 4 + 2 * n * n * 4 + (12 * n + 2 * d) * width * 8 + schur * 8


@dataclass
class FoldDiscriminant:
    """One fold's pieces of scikit-learn's svd-solver discriminant (see ``SmallSideLDA._finish``)."""

    means: np.ndarray  # k x d class means of the training rows
    priors: np.ndarray  # k
    centred: np.ndarray  # k x d, D^-1 (m_c - xbar)
    w: np.ndarray  # d x k, pinv(Xw^T Xw) centred^T
    std: np.ndarray  # d, the within-class standard deviations (1 where 0)


@dataclass
class _Fold:
    train: np.ndarray
    cols: slice
    counts: np.ndarray
    means: np.ndarray
    std: np.ndarray
    scale: np.ndarray  # sqrt(fac) / std
    priors: np.ndarray
    centred: np.ndarray
    alpha: float
    test: np.ndarray | None = None  # every row not in train
    schur: tuple[np.ndarray, bool] | None = None


def _run_inverse(x64, y, means, scale, counts):
    """``(A, lambda_min estimate)``: float32 ``(G_0 + alpha Y Y^T)^-1``, or None if not SPD."""
    n, d = x64.shape
    z = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, _ROWS):
        rows = slice(start, start + _ROWS)
        z[rows] = (x64[rows] - means[y[rows]]) * scale
    gram = z @ z.T
    del z
    alpha = float(np.trace(gram)) / n or 1.0
    ind = np.zeros((n, len(counts)), dtype=np.float32)
    ind[np.arange(n), y] = 1.0 / np.sqrt(counts[y])
    for start in range(0, n, _ROWS):  # + alpha Y Y^T, a block of rows at a time
        rows = slice(start, start + _ROWS)
        fill = ind[rows] @ ind.T  # one non-zero term per entry: exact, whatever the blocking
        fill *= np.float32(alpha)
        gram[rows] += fill
    factor = cholesky_f32(gram)
    if factor is None:
        return None
    chol, rcond, anorm = factor
    inv, info = sla.lapack.spotri(chol, lower=1, overwrite_c=1)
    if info != 0:
        return None
    mirror_lower(inv)  # spotri fills the lower triangle; spotrf's clean=1 left the upper zero
    if rcond < _MIN_RCOND:
        return None  # a float32 inverse this ill-conditioned does not precondition
    # lambda_min >= ~rcond * ||A||_1 (an estimate, allow 10x)
    return inv, rcond * anorm / 10


def _fold(train, stats: ClassStats, k, fac: Callable[[int, int], float], priors_of) -> _Fold | None:
    """A fold's class means, deviations and scalings, from its training rows' statistics."""
    if len(np.unique(train)) != len(train):
        return None  # a repeated row weighs twice in X[train]; the batched operator sees it once
    counts = stats.counts.copy()
    if np.any(counts == 0):
        return None
    ss, raw = stats.ss.sum(axis=0), stats.raw.sum(axis=0)
    if np.any((raw > 0) & (ss <= _FLAT_SS * raw)):
        return None  # constant within classes but not zero: scikit-learn's std may be noise
    n_train = len(train)
    means = stats.means
    std = np.sqrt(ss / n_train)
    std[std == 0] = 1.0
    scale = math.sqrt(fac(n_train, k)) / std
    priors = priors_of(counts)
    centred = (means - priors @ means) / std
    alpha = float(np.sum(scale**2 * ss)) / n_train or 1.0
    return _Fold(train, slice(0), counts, means, std, scale, priors, centred, alpha)


class _Batch:
    """The folds' operators ``G_f`` and preconditioners, on one n x (F (k - 1)) block of columns.

    Column block ``f`` holds fold ``f``'s vectors over all n rows, zero on its test rows.
    """

    def __init__(self, x64, y, inverse, folds: list[_Fold], k: int) -> None:
        self.x, self.y, self.inv, self.folds, self.k = x64, y, inverse, folds, k
        n, d = x64.shape
        width = max(fold.cols.stop for fold in folds)
        self.mask = np.zeros((n, width))
        self.scale2 = np.zeros((d, width))
        for fold in folds:
            fold.test = np.setdiff1d(np.arange(n), fold.train)
            self.mask[fold.train, fold.cols] = 1.0
            self.scale2[:, fold.cols] = (fold.scale**2)[:, None]
            block = inverse[np.ix_(fold.test, fold.test)].astype(np.float64)
            fold.schur = sla.cho_factor(block, lower=True)

    def class_sums(self, v: np.ndarray) -> np.ndarray:
        """``Y^T v`` (k x F k): per-class sums of each column (test rows are zero)."""
        sums = np.zeros((self.k, v.shape[1]))
        for c in range(self.k):
            sums[c] = v[self.y == c].sum(axis=0)
        return sums

    def centred_t(self, v: np.ndarray, sums: np.ndarray) -> np.ndarray:
        """``(X_T - Y_T M_f)^T v_f`` for every fold (d x F k), unscaled; ``sums = Y^T v``."""
        out = (v.T @ self.x).T  # faster than x.T @ v for a thin v
        for fold in self.folds:
            out[:, fold.cols] -= fold.means.T @ sums[:, fold.cols]
        return out

    def xw_t(self, v: np.ndarray) -> np.ndarray:
        """``Xw_f^T v_f`` for every fold (d x F k)."""
        out = self.centred_t(v, self.class_sums(v))
        for fold in self.folds:
            out[:, fold.cols] *= fold.scale[:, None]
        return out

    def apply(self, v: np.ndarray) -> np.ndarray:
        """``(G_f + alpha_f Y_f Y_f^T) v_f`` for every fold (the exact float64 operators)."""
        sums = self.class_sums(v)
        u = self.centred_t(v, sums)
        u *= self.scale2
        out = (u.T @ self.x.T).T
        for fold in self.folds:
            c = fold.cols
            out[:, c] -= (fold.means @ u[:, c])[self.y]
            out[:, c] += fold.alpha * (sums[:, c] / fold.counts[:, None])[self.y]
        out *= self.mask
        return out

    def precondition(self, r: np.ndarray) -> np.ndarray:
        """``G_0[T, T]^-1 r_f`` for every fold, by a Schur complement on its test rows."""
        inv = self.inv
        ar = (inv @ r.astype(np.float32)).astype(np.float64)
        corr = np.zeros_like(r)
        for fold in self.folds:
            corr[fold.test, fold.cols] = sla.cho_solve(fold.schur, ar[fold.test, fold.cols])
        ar -= (inv @ corr.astype(np.float32)).astype(np.float64)
        ar *= self.mask
        return ar


def ritz_min(alphas: list[np.ndarray], betas: list[np.ndarray]) -> np.ndarray:
    """Smallest Ritz value of each column's Lanczos matrix, from its own CG coefficients.

    ``alphas[i][j]`` is NaN once column ``j`` has converged or broken down (its later
    steps do not count).
    """
    a = np.array(alphas)
    b = np.array(betas) if betas else np.zeros((0, a.shape[1]))
    out = np.full(a.shape[1], np.inf)
    for j in range(a.shape[1]):
        valid = np.isfinite(a[:, j]) & (a[:, j] > 0)
        steps = int(np.argmin(valid)) if not valid.all() else len(valid)  # the leading steps
        if not steps:
            continue
        aj, bj = a[:steps, j], b[: steps - 1, j]
        diag = 1.0 / aj
        diag[1:] += bj / aj[:-1]
        off = np.sqrt(np.maximum(bj, 0.0)) / aj[:-1]
        out[j] = sla.eigvalsh_tridiagonal(diag, off, select="i", select_range=(0, 0))[0]
    return out


class BatchedOperator(Protocol):
    """Each column's own SPD operator and preconditioner, applied to a block of columns."""

    def apply(self, v: np.ndarray) -> np.ndarray: ...

    def precondition(self, r: np.ndarray) -> np.ndarray: ...


def batched_pcg(batch: BatchedOperator, b: np.ndarray):
    """Flexible preconditioned CG on every column: ``(x, true relative residual, Ritz min)``.

    A column whose operator shows ``p^T A p <= 0`` stops there with residual ``inf``.
    """
    x = np.zeros_like(b)
    r = b.copy()
    z = batch.precondition(r)
    p = z.copy()
    rz = np.einsum("ij,ij->j", r, z)
    bnorm = np.linalg.norm(b, axis=0)
    bnorm[bnorm == 0] = 1.0
    active = np.ones(b.shape[1], dtype=bool)
    broken = np.zeros(b.shape[1], dtype=bool)
    alphas, betas = [], []
    for _ in range(_MAX_ITER):
        ap = batch.apply(p)
        pap = np.einsum("ij,ij->j", p, ap)
        # p^T A p <= 0 with a residual left: the operator is not positive definite there
        broken |= active & ~(pap > 0) & (np.linalg.norm(r, axis=0) > _RTOL * bnorm)
        active &= ~broken
        alpha = np.where(active & (pap > 0), rz / np.where(pap > 0, pap, 1.0), 0.0)
        alphas.append(np.where(active, alpha, np.nan))
        x += p * alpha
        r -= ap * alpha
        active &= np.linalg.norm(r, axis=0) > _RTOL * bnorm
        if not active.any():
            break
        z_old = z
        z = batch.precondition(r)
        rz_new = np.einsum("ij,ij->j", r, z)
        beta = (rz_new - np.einsum("ij,ij->j", r, z_old)) / np.where(rz != 0, rz, 1.0)
        beta = np.where(active, np.maximum(beta, 0.0), 0.0)
        betas.append(beta)
        p = z + p * beta
        rz = rz_new
    true = np.linalg.norm(batch.apply(x) - b, axis=0) / bnorm
    true[broken] = np.inf
    return x, true, ritz_min(alphas, betas)


def n_side_folds(
    x64: np.ndarray,
    y: np.ndarray,
    trains: list[np.ndarray],
    k: int,
    *,
    tol: float,
    fac: Callable[[int, int], float],
    priors_of: Callable[[np.ndarray], np.ndarray],
) -> list[FoldDiscriminant | None]:
    """Each fold's discriminant pieces (None: solve that fold on its own).

    ``x64``: all rows (float64); ``y``: their labels 0..k-1; ``trains``: each
    fold's training rows; ``fac(n, k)``: scikit-learn's scatter factor;
    ``priors_of(counts)``: a fold's priors. A fold's result depends on its
    training rows only; the other rows (and their labels) shape the shared
    preconditioner, i.e. how fast its solve converges, not what it converges to.
    """
    out: list[FoldDiscriminant | None] = [None] * len(trains)
    per_fold, run = fold_stats(x64, y, trains, k)
    setup = [_fold(tr, st, k, fac, priors_of) for tr, st in zip(trains, per_fold, strict=True)]
    usable = [(f, fold) for f, fold in enumerate(setup) if fold is not None]
    if not usable:
        return out
    counts0, means0 = run.counts, run.means
    std0 = np.sqrt(run.ss.sum(axis=0) / len(y))
    std0[std0 == 0] = 1.0
    inverse = _run_inverse(x64, y, means0, math.sqrt(fac(len(y), k)) / std0, counts0)
    if inverse is None or not well_conditioned(inverse[1], tol):
        return out
    inv, lam0 = inverse
    folds = [fold for _, fold in usable]
    for i, fold in enumerate(folds):
        fold.cols = slice(i * (k - 1), (i + 1) * (k - 1))
    try:
        batch = _Batch(x64, y, inv, folds, k)
    except np.linalg.LinAlgError:  # a Schur block not positive definite in float32
        return out
    centred = np.zeros((x64.shape[1], len(folds) * (k - 1)))
    for fold in folds:
        free = free_classes(fold.priors)[0]
        centred[:, fold.cols] = (fold.scale * fold.centred[free]).T
    rhs = (centred.T @ x64.T).T
    for fold in folds:
        free = free_classes(fold.priors)[0]
        rhs[:, fold.cols] -= ((fold.means * fold.scale) @ fold.centred[free].T)[y]
    rhs *= batch.mask
    z, res1, ritz1 = batched_pcg(batch, rhs)
    u, res2, ritz2 = batched_pcg(batch, z)
    w = batch.xw_t(u)
    for f, fold in usable:
        c = fold.cols
        ritz = min(float(ritz1[c].min()), float(ritz2[c].min()))
        converged = max(float(res1[c].max()), float(res2[c].max())) < _ACCEPT
        # lambda_min(G_f) >= lambda_min(P_f G_f) lambda_min(G_0[T, T]) >= ritz * lam0
        if converged and ritz > 0.5 and well_conditioned(min(ritz, 1.0) * lam0, tol):
            out[f] = FoldDiscriminant(
                fold.means, fold.priors, fold.centred, complete_w(w[:, c], fold.priors), fold.std
            )
    return out
