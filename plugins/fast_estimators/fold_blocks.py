"""Per-fold class statistics from one pass over the rows, grouped by fold membership.

Under k-fold CV a row trains in every fold but one, so the folds' training sets
are unions of a few *blocks*: rows with the same membership (which folds they
train in; ten blocks for ten folds). Each block's per-class counts, sums,
ranges and sums of squares about its own means are computed once; a fold's
statistics are combined from its blocks (Chan, Golub and LeVeque's pairwise
update for the sums of squares). Its relative error grows with the features'
``|mean| / spread`` times the rounding unit (8.6e-11 at mean 1e3 and spread 1e-3
against 2.6e-15 for a second pass; the n side refuses within-class spreads
below 1e-4 of the values, ``_FLAT_SS``). One pass over ``X`` replaces a pass per
fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_ROWS = 2048  # rows per chunk when scanning X


@dataclass
class ClassStats:
    """Per-class statistics of a set of rows (k x d arrays; ``counts``: k)."""

    counts: np.ndarray
    means: np.ndarray
    ss: np.ndarray  # sums of squares about the class means
    raw: np.ndarray  # sums of squares
    lo: np.ndarray  # minima (inf for an absent class)
    hi: np.ndarray  # maxima (-inf for an absent class)

    @classmethod
    def empty(cls, k: int, d: int) -> ClassStats:
        zeros = np.zeros((k, d))
        inf = np.full((k, d), np.inf)
        return cls(np.zeros(k), zeros, zeros.copy(), zeros.copy(), inf, -inf)

    def merge(self, other: ClassStats) -> ClassStats:
        """The statistics of both sets of rows together."""
        n = self.counts + other.counts
        safe = np.where(n > 0, n, 1.0)[:, None]
        delta = other.means - self.means
        means = self.means + delta * (other.counts[:, None] / safe)
        ss = self.ss + other.ss + delta**2 * (self.counts * other.counts)[:, None] / safe
        return ClassStats(
            n,
            means,
            ss,
            self.raw + other.raw,
            np.minimum(self.lo, other.lo),
            np.maximum(self.hi, other.hi),
        )


def rows_stats(X: np.ndarray, rows: np.ndarray, y_rows: np.ndarray, k: int) -> ClassStats:
    """:class:`ClassStats` of ``X[rows]`` (labels ``y_rows`` in 0..k-1), in chunks of rows.

    A column constant within a class keeps an exact mean and a sum of squares of exactly 0
    (no shift of the values: a shifted zero column would come back as rounding noise).
    """
    total = ClassStats.empty(k, X.shape[1])
    for start in range(0, len(rows), _ROWS):
        block = X[rows[start : start + _ROWS]]
        labels = y_rows[start : start + _ROWS]
        part = ClassStats.empty(k, X.shape[1])
        for c in range(k):
            sel = block[labels == c]
            if not len(sel):
                continue
            part.counts[c] = len(sel)
            part.raw[c] = np.einsum("ij,ij->j", sel, sel)
            part.lo[c] = sel.min(axis=0)
            part.hi[c] = sel.max(axis=0)
            part.means[c] = sel.mean(axis=0)
            sel -= part.means[c]
            part.ss[c] = np.einsum("ij,ij->j", sel, sel)
        total = total.merge(part)
    return total


def membership_blocks(
    n: int, trains: list[np.ndarray], max_blocks: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(member, block)``: which folds train on each block (blocks x F bools) and each row's
    block (n); None when there are more than ``max_blocks`` distinct memberships."""
    member = np.zeros((n, len(trains)), dtype=bool)
    for f, train in enumerate(trains):
        member[train, f] = True
    kinds, block = np.unique(member, axis=0, return_inverse=True)
    if len(kinds) > max_blocks:
        return None
    return kinds, block.ravel()


def fold_stats(
    X: np.ndarray, y: np.ndarray, trains: list[np.ndarray], k: int, max_blocks: int = 64
) -> tuple[list[ClassStats], ClassStats]:
    """Each fold's :class:`ClassStats` of its training rows (each row counted once) and the
    run's (all rows), from one pass over ``X`` (with more than ``max_blocks`` distinct
    memberships: a pass per fold)."""
    everything = np.arange(len(y))
    grouped = membership_blocks(len(y), trains, max_blocks)
    if grouped is None:
        per_fold = [rows_stats(X, np.unique(tr), y[np.unique(tr)], k) for tr in trains]
        return per_fold, rows_stats(X, everything, y, k)
    kinds, block = grouped
    per_block = []
    run = ClassStats.empty(k, X.shape[1])
    for b in range(len(kinds)):
        rows = np.flatnonzero(block == b)
        per_block.append(rows_stats(X, rows, y[rows], k))
        run = run.merge(per_block[-1])
    out = []
    for f in range(len(trains)):
        stats = ClassStats.empty(k, X.shape[1])
        for b in np.flatnonzero(kinds[:, f]):
            stats = stats.merge(per_block[b])
        out.append(stats)
    return out, run
