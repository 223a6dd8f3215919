"""Every fold's nearest training row at once, streamed over the blocks of the Gram matrix.

Under k-fold cross-validation where the test sets partition the rows and each
fold trains on all other rows, 1-NN needs, for every row, the nearest row of
another fold. :func:`nearest_in_other_folds` computes the Gram matrix's
blocks exactly as :meth:`.products.NumpyProducts.gram` does (same slices, same
BLAS calls, upper blocks mirrored), turns each into squared distances with the
same formula as :func:`.gram.squared_distances`, and keeps a running minimum
per row - never the n x n matrix. Every distance is bit for bit the one the
shared-Gram path would compare, and ties go to the lowest row index as
``np.argmin`` over a fold's (sorted) training rows does, so the neighbours are
the same. It costs the Gram's products and O(block^2) memory per thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from bench.fold_fastpath import CVContext
from plugins.fast_estimators.products import BLOCK, NumpyProducts, blocks, run_blocks


def fold_of_rows(context: CVContext) -> np.ndarray | None:
    """Each row's test fold, when the folds are a partition with train = the other rows; else None.

    Decided once per run.
    """
    return context.shared("fold-of-rows", lambda: _partition(context))


def _partition(context: CVContext) -> np.ndarray | None:
    n = context.n_samples
    fold_of = np.full(n, -1, dtype=np.int64)
    for f, (train, test) in enumerate(context.folds):
        if len(train) + len(test) != n or np.any(fold_of[test] != -1):
            return None
        fold_of[test] = f
    if np.any(fold_of < 0):
        return None
    for f, (train, _) in enumerate(context.folds):
        if np.any(fold_of[train] == f):  # train overlaps its own test rows
            return None
    return fold_of


class _Nearest:
    """Per-row best squared distance and row index, merged under a lock (lowest index on ties)."""

    def __init__(self, n: int) -> None:
        self.dist = np.full(n, np.inf)
        self.index = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        self._lock = threading.Lock()

    def merge(self, rows: slice, dist: np.ndarray, index: np.ndarray) -> None:
        with self._lock:
            best, where = self.dist[rows], self.index[rows]
            better = (dist < best) | ((dist == best) & (index < where))
            best[better] = dist[better]
            where[better] = index[better]


def _block_nearest(
    d2: np.ndarray, row_fold: np.ndarray, col_fold: np.ndarray, col0: int
) -> tuple[np.ndarray, np.ndarray]:
    """Masked row minima of one distance block: rows never match columns of their own fold."""
    d2[row_fold[:, None] == col_fold[None, :]] = np.inf
    arg = np.argmin(d2, axis=1)
    return d2[np.arange(len(arg)), arg], arg.astype(np.int64) + col0


def nearest_in_other_folds(
    x: np.ndarray, sq: np.ndarray, fold_of: np.ndarray, products: NumpyProducts
) -> np.ndarray:
    """Row index of each row's nearest row in another fold (``x`` float64, ``sq`` its norms)."""
    n = x.shape[0]
    best = _Nearest(n)
    spans = blocks(n, BLOCK)

    def pair(i: tuple[int, int], j: tuple[int, int]) -> Callable[[], None]:
        def work() -> None:
            (i0, i1), (j0, j1) = i, j
            a = x[i0:i1]
            block = products.matmul_t(a, a) if i == j else products.matmul_t(a, x[j0:j1])
            d2 = sq[i0:i1, None] + sq[None, j0:j1] - 2.0 * block
            np.maximum(d2, 0.0, out=d2)
            if i != j:
                dt = sq[j0:j1, None] + sq[None, i0:i1] - 2.0 * block.T
                np.maximum(dt, 0.0, out=dt)
                best.merge(slice(j0, j1), *_block_nearest(dt, fold_of[j0:j1], fold_of[i0:i1], i0))
            best.merge(slice(i0, i1), *_block_nearest(d2, fold_of[i0:i1], fold_of[j0:j1], j0))

        return work

    run_blocks(products.n_jobs, (pair(i, j) for k, i in enumerate(spans) for j in spans[k:]))
    return best.index
