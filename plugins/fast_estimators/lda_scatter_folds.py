"""Every fold's d-side discriminant at once: the run's scatter factorised once, batched CG.

With more samples than features, a fold's discriminant is ``A_f^-1 c_f`` for
the d x d operator ``A_f = fac_f D^-1 S_f D^-1`` (``S_f``: the within-class
scatter of the fold's training rows) and ``c_f = D^-1 (m_c - xbar)``, for
any positive scaling ``D`` (at full rank the discriminant does not depend on
it, :func:`.lda_solvers.solve_d_side`). The per-fold path factorises each
fold's downdated scatter: a d^3 / 3 Cholesky per fold (~1.2 s at d = 4,096).
Here:

* every fold uses the run's scaling ``D_0`` (all rows' within-class standard
  deviations), so the only difference between folds is ``S_f`` itself;
* the run's ``C = fac_0 D_0^-1 S_0 D_0^-1`` is factorised once (float64) and
  preconditions conjugate gradients on every fold's exact operator, applied
  through ``X`` (two products per iteration for all folds' columns: ``X`` is
  read twice per iteration for ten folds);
* sklearn's rank cut is checked with a bound that holds for its own scaling
  ``D_f``: a fold's within-class sum of squares never exceeds the run's,
  feature by feature, so ``D_0^2 / D_f^2 >= n_f / n_0`` and
  ``lambda_min(A_f with D_f) >= n_f / n_0 lambda_min(A_f with D_0)
  >= n_f / n_0 lambda_min(P_f A_f) lambda_min(C)`` (``P_f``: the
  preconditioner restricted to the fold's varying features).

* each fold also solves a seeded random *probe* column: removing rows can make
  a fold's scatter singular where the run's is not, and a right-hand side
  orthogonal to the null direction would still converge (to a wrong answer);
  the probe's system is then inconsistent, or its Ritz value shows the small
  eigenvalue.

Class means and ranges come from one pass over the rows (:mod:`.fold_blocks`). A fold this
cannot vouch for (a feature constant within every class on its training rows
but not zero, a repeated training row, no convergence) gets None and takes
the per-fold path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from plugins.fast_estimators.fold_blocks import ClassStats, fold_stats
from plugins.fast_estimators.lda_folds import (
    FoldDiscriminant,
    batched_pcg,
    complete_w,
    free_classes,
)
from plugins.fast_estimators.lda_solvers import well_conditioned

_ACCEPT = 1e-12  # largest true relative residual accepted at the end
_MIN_RCOND = 1e-12  # the run's scaled scatter: below this reciprocal condition, no shared solve


def d_side_bytes(n: int, d: int, width: int) -> int:
    """Peak bytes of :func:`d_side_folds` beyond ``x64`` and the run's raw scatter.

    ``width`` = folds x classes (k - 1 solves and a probe per fold).
    """
    return d * d * 8 + (3 * n + 8 * d) * width * 8


@dataclass
class _Fold:
    train: np.ndarray
    counts: np.ndarray
    means: np.ndarray
    priors: np.ndarray
    centred: np.ndarray  # k x d, D_0^-1 (m_c - xbar), zero outside the varying features
    varies: np.ndarray  # d bools: varies within some class on the training rows
    fac: float
    cols: slice  # k columns: the k - 1 solved classes, then the probe


class _ScatterBatch:
    """The folds' operators ``fac_f D_0^-1 S_f D_0^-1`` and the run's preconditioner."""

    def __init__(self, x64, y, d0, cols0, chol, folds: list[_Fold], k: int) -> None:
        self.x, self.y, self.d0, self.cols0, self.chol = x64, y, d0, cols0, chol
        self.folds, self.k = folds, k
        n, d = x64.shape
        width = max(fold.cols.stop for fold in folds)
        self.rows = np.zeros((n, width))
        self.mask = np.zeros((d, width))
        for fold in folds:
            self.rows[fold.train, fold.cols] = 1.0
            self.mask[:, fold.cols] = fold.varies[:, None]

    def apply(self, v: np.ndarray) -> np.ndarray:
        """``fac_f D_0^-1 (X_T - Y M_f)^T (X_T - Y M_f) D_0^-1 v_f`` for every fold."""
        s = v / self.d0[:, None]
        u = (s.T @ self.x.T).T  # n x W
        for fold in self.folds:
            u[:, fold.cols] -= (fold.means @ s[:, fold.cols])[self.y]
        u *= self.rows
        out = (u.T @ self.x).T  # d x W
        sums = np.zeros((self.k, u.shape[1]))
        for c in range(self.k):
            sums[c] = u[self.y == c].sum(axis=0)
        for fold in self.folds:
            out[:, fold.cols] -= fold.means.T @ sums[:, fold.cols]
            out[:, fold.cols] *= fold.fac
        out /= self.d0[:, None]
        out *= self.mask
        return out

    def precondition(self, r: np.ndarray) -> np.ndarray:
        """``C^-1`` restricted to each fold's varying features (SPD on them)."""
        sol, info = sla.lapack.dpotrs(self.chol, r[self.cols0], lower=1)
        if info != 0:  # pragma: no cover - the factor was checked
            raise np.linalg.LinAlgError("dpotrs failed")
        out = np.zeros_like(r)
        out[self.cols0] = sol
        out *= self.mask
        return out


def _run_factor(scatter, counts0, means0, ss0, n, fac0, varies0):
    """``(D_0, cols0, chol, lambda_min estimate)`` of the run's scaled scatter, or None."""
    d = scatter.shape[0]
    cols0 = np.flatnonzero(varies0)
    if not len(cols0) or np.any(ss0[cols0] <= 0):
        return None
    d0 = np.ones(d)
    d0[cols0] = np.sqrt(ss0[cols0] / n)
    sub = scatter[np.ix_(cols0, cols0)]
    m = means0[:, cols0]
    sub -= m.T @ (counts0[:, None] * m)  # S_0 = X^T X - sum_c n_c m_c m_c^T
    sub *= fac0
    sub /= d0[cols0][:, None]
    sub /= d0[cols0][None, :]
    anorm = float(np.abs(sub).sum(axis=0).max())
    chol, info = sla.lapack.dpotrf(sub, lower=1, clean=1, overwrite_a=1)
    if info != 0:
        return None
    rcond, info = sla.lapack.dpocon(chol, anorm, uplo="L")
    if info != 0 or rcond < _MIN_RCOND:
        return None
    return d0, cols0, chol, rcond * anorm / 10  # lambda_min >= ~rcond ||C||_1 (allow 10x)


def d_side_folds(
    x64: np.ndarray,
    y: np.ndarray,
    trains: list[np.ndarray],
    k: int,
    *,
    scatter: np.ndarray,
    tol: float,
    fac: Callable[[int, int], float],
    priors_of: Callable[[np.ndarray], np.ndarray],
) -> list[FoldDiscriminant | None]:
    """Each fold's discriminant pieces (None: solve that fold on its own).

    ``x64``: all rows (float64); ``y``: their labels 0..k-1; ``trains``: each
    fold's training rows; ``scatter``: ``x64.T @ x64`` (read only); ``fac(n,
    k)``: scikit-learn's scatter factor; ``priors_of(counts)``: a fold's
    priors. A fold's result depends on its training rows only; the other rows
    shape the preconditioner, i.e. how fast its solve converges.
    """
    n, d = x64.shape
    out: list[FoldDiscriminant | None] = [None] * len(trains)
    per_fold, run = fold_stats(x64, y, trains, k)
    varies0 = np.any(run.hi > run.lo, axis=0)
    factor = _run_factor(scatter, run.counts, run.means, run.ss.sum(axis=0), n, fac(n, k), varies0)
    if factor is None:
        return out
    d0, cols0, chol, lam0 = factor
    folds: list[tuple[int, _Fold]] = []
    for f, train in enumerate(trains):
        fold = _fold(
            train, per_fold[f], k, fac, priors_of, d0, slice(len(folds) * k, (len(folds) + 1) * k)
        )
        if fold is not None:
            folds.append((f, fold))
    if not folds:
        return out
    batch = _ScatterBatch(x64, y, d0, cols0, chol, [fold for _, fold in folds], k)
    rhs = np.zeros((d, len(folds) * k))
    rng = np.random.default_rng(0)
    for _, fold in folds:
        start = fold.cols.start
        rhs[:, start : start + k - 1] = fold.centred[free_classes(fold.priors)[0]].T
        # the probe: a fold singular on its own training rows (the run's scatter is not)
        # makes its system inconsistent, or its Krylov space shows the small eigenvalue
        rhs[:, start + k - 1] = rng.standard_normal(d) * fold.varies
    w, res, ritz = batched_pcg(batch, rhs)
    for f, fold in folds:
        c = fold.cols
        share = len(fold.train) / n
        bound = 0.5 * float(ritz[c].min()) * lam0 * share  # lambda_min under sklearn's scaling
        if float(res[c].max()) < _ACCEPT and well_conditioned(bound, tol):
            w_fold = complete_w(w[:, c.start : c.stop - 1], fold.priors)
            out[f] = FoldDiscriminant(fold.means, fold.priors, fold.centred, w_fold, d0)
    return out


def _fold(train, stats: ClassStats, k, fac, priors_of, d0, cols: slice) -> _Fold | None:
    """A fold's priors, centred means and varying features from its training rows' statistics
    (None: a repeated row, a missing class or a constant non-zero feature)."""
    if len(np.unique(train)) != len(train) or np.any(stats.counts == 0):
        return None
    varies = np.any(stats.hi > stats.lo, axis=0)
    if np.any(~varies & np.any(stats.lo != 0, axis=0)):
        return None  # constant non-zero columns: sklearn's std there is rounding noise
    priors = priors_of(stats.counts)
    centred = (stats.means - priors @ stats.means) / d0
    centred[:, ~varies] = 0.0
    return _Fold(
        train, stats.counts, stats.means, priors, centred, varies, fac(len(train), k), cols
    )
