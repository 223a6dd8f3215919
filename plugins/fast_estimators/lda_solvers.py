"""The linear discriminant's pseudo-inverse solves, on whichever side of ``X`` is smaller.

scikit-learn's ``solver="svd"`` discriminant is ``pinv(Xw^T Xw) D^-1 (m_c - xbar)``
with ``Xw`` the within-class centred training rows scaled by ``sqrt(fac) / std``.

* **n side** (fewer samples than features, :func:`solve_n_side`): the n x n
  Gram ``Xw Xw^T`` with the k known null directions (class indicators)
  filled in is factorised once (float32 Cholesky, refined against the exact
  float64 operator; float64 when that is not accurate enough).
* **d side** (more samples than features, :func:`solve_d_side`): the d x d
  operator ``Xw^T Xw = fac D^-1 S_w D^-1`` from a scatter matrix that the
  caller may *downdate* (a fold's scatter is the run's minus its test rows'),
  factorised in float64 and used as the preconditioner of iterative
  refinement against the exact operator, applied through ``X`` itself.

Both return None when the problem is too ill-conditioned to reproduce
scikit-learn's rank cut (``tol``); the caller then fits scikit-learn's own LDA.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.linalg as sla

Apply = Callable[[np.ndarray], np.ndarray]


def well_conditioned(lam_min: float, tol: float) -> bool:
    """Whether the smallest eigenvalue clears sklearn's rank cut (S > tol) 100x over."""
    return lam_min > 100 * tol**2


def cholesky_f32(gram: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    """``(L, rcond, ||G||_1)`` of a float32 SPD ``gram`` (overwritten), or None if not SPD."""
    anorm = float(np.abs(gram).sum(axis=0).max())
    chol, info = sla.lapack.spotrf(gram, lower=1, clean=1, overwrite_a=1)
    if info != 0:
        return None
    rcond, info = sla.lapack.spocon(chol, anorm, uplo="L")
    return None if info != 0 else (chol, float(rcond), anorm)


def mirror_lower(a: np.ndarray, tile: int = 256) -> None:
    """``a += a.T`` then halve the diagonal, in place, for square ``a`` whose upper triangle is zero.

    The same bits as those two lines (a zero's sign, a diagonal above half the largest
    float included), a tile at a time: adding a matrix's own transpose makes an ``n x n``
    temporary.
    """
    n = a.shape[0]
    for i in range(0, n, tile):
        block = slice(i, i + tile)
        diag = a[block, block]
        diag[...] = diag + diag.T
        diag[np.diag_indices_from(diag)] /= 2
        below = a[i + tile :, block]
        below += 0.0  # x + 0 (the zero upper triangle): -0.0 -> +0.0, as a + a.T does
        a[block, i + tile :] = below.T


def refine(apply: Apply, precond: Apply, b: np.ndarray, max_iter: int = 30):
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


# -- n side ----------------------------------------------------------------------------


def solve_twice_f64(xw, indicators, rhs, tol: float) -> np.ndarray | None:
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
    if info != 0 or not well_conditioned(rcond * anorm / 10, tol):
        return None
    return sla.cho_solve((chol, True), sla.cho_solve((chol, True), rhs, check_finite=False))


def solve_twice_f32(xw, indicators, rhs, tol: float) -> np.ndarray | None:
    """``G^-2 rhs`` from a float32 Cholesky refined with the float64 operator, or None."""
    n, d = xw.shape
    x32 = xw.astype(np.float32)
    gram = x32 @ x32.T
    del x32
    sq = np.einsum("ij,ij->i", xw, xw)
    alpha = float(sq.sum()) / n or 1.0
    gram += np.float32(alpha) * (indicators @ indicators.T).astype(np.float32)
    factor = cholesky_f32(gram)
    if factor is None:
        return None
    chol, rcond, anorm = factor

    def apply(v: np.ndarray) -> np.ndarray:
        return xw @ (xw.T @ v) + alpha * (indicators @ (indicators.T @ v))

    def precond(r: np.ndarray) -> np.ndarray:
        out, _ = sla.lapack.spotrs(chol, r.astype(np.float32), lower=1)
        return out.astype(np.float64)

    first = refine(apply, precond, rhs)
    if first is None:
        return None
    z, rho = first
    # rho ~ |I - (L L^T)^-1 G|, so lambda_min(G) >= (1 - rho) lambda_min(L L^T);
    # lambda_min(L L^T) >= ~rcond * ||A||_1 (estimate, allow 10x); count rho twice.
    if rho >= 0.25 or not well_conditioned((1 - 2 * rho) * rcond * anorm / 10, tol):
        return None
    second = refine(apply, precond, z)
    return None if second is None else second[0]


def solve_n_side(
    xw: np.ndarray, indicators: np.ndarray, centred: np.ndarray, tol: float
) -> np.ndarray | None:
    """``w = pinv(Xw^T Xw) centred^T`` (d x k) through the n x n Gram, or None."""
    rhs = xw @ centred.T
    z = solve_twice_f32(xw, indicators, rhs, tol)
    if z is None:
        z = solve_twice_f64(xw, indicators, rhs, tol)
    return None if z is None else xw.T @ z


# -- d side ----------------------------------------------------------------------------


def solve_d_side(
    scatter_w: np.ndarray,
    columns: np.ndarray,
    fac: float,
    centred_raw: np.ndarray,
    apply_sw: Apply,
    tol: float,
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(w, std)`` with ``w = pinv(Xw^T Xw) D^-1 (m_c - xbar)`` (d x k) via the d x d side, or None.

    ``scatter_w`` is (an approximation of) the within-class scatter
    ``S_w = Xc^T Xc`` (it is overwritten); ``columns`` the features that vary
    within some class (the others are exactly zero in ``Xw``); ``centred_raw``
    is ``m_c - xbar`` (k x d); ``apply_sw(v)`` applies the exact ``S_w`` to
    ``v`` (d x k, zero outside ``columns``). ``D`` (``std``) is any positive
    scaling (the discriminant does not depend on it at full rank): here
    ``sqrt(fac * diag(S_w))``, 1 outside ``columns``.
    """
    d = scatter_w.shape[0]
    cols = np.asarray(columns)
    if not len(cols):
        return None
    sub = scatter_w[np.ix_(cols, cols)]
    diag = np.diag(sub).copy()
    if not np.all(diag > 0):
        return None
    std_j = np.sqrt(fac * diag)
    sub *= fac
    sub /= std_j[:, None]
    sub /= std_j[None, :]
    anorm = float(np.abs(sub).sum(axis=0).max())
    chol, info = sla.lapack.dpotrf(sub, lower=1, clean=1, overwrite_a=1)
    if info != 0:
        return None
    rcond, info = sla.lapack.dpocon(chol, anorm, uplo="L")
    if info != 0 or not well_conditioned(rcond * anorm / 10, tol):
        return None
    std = np.ones(d)
    std[cols] = std_j
    rhs = (centred_raw[:, cols] / std_j).T  # D^-1 (m_c - xbar), |J| x k

    def apply(v: np.ndarray) -> np.ndarray:
        full = np.zeros((d, v.shape[1]))
        full[cols] = v / std_j[:, None]
        return fac * apply_sw(full)[cols] / std_j[:, None]

    def precond(r: np.ndarray) -> np.ndarray:
        out, _ = sla.lapack.dpotrs(chol, r, lower=1)
        return out

    solved = refine(apply, precond, rhs)
    if solved is None:
        return None
    z, rho = solved
    if rho >= 0.25 or not well_conditioned((1 - 2 * rho) * rcond * anorm / 10, tol):
        return None
    w = np.zeros((d, rhs.shape[1]))
    w[cols] = z
    return w, std


def between_rank_full(centred: np.ndarray, w: np.ndarray, priors: np.ndarray, tol: float) -> bool:
    """Whether scikit-learn's between-class SVD keeps all k - 1 directions (its ``tol * S[0]`` cut).

    ``X_b X_b^T = P^1/2 centred w P^1/2 * n fac2`` up to a positive factor, so its
    eigenvalues give the ratios of the squared singular values.
    """
    k = centred.shape[0]
    if k <= 2:
        return True
    root = np.sqrt(priors)
    gram = root[:, None] * (centred @ w) * root[None, :]
    eig = np.sort(np.clip(np.linalg.eigvalsh((gram + gram.T) / 2), 0, None))[::-1]
    sing = np.sqrt(eig)
    if not sing[0] > 0:
        return False
    # k - 1 kept with margin; the k-th (numerically zero) clearly cut
    return bool(sing[k - 2] > 10 * tol * sing[0] and sing[k - 1] < 0.1 * tol * sing[0])
