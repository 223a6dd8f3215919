"""Every feature of a float32 matrix sorted once, reusable for any row subset (any fold).

Flat layout, feature after feature: one header slot standing for all samples
at the column minimum, then the samples above it in ascending value order,
with packed value groups (see :mod:`.tree_builder` for how splits use them).
Memory is O(n x d): a few bytes per non-minimum entry.
"""

from __future__ import annotations

import numpy as np
from numba import njit

FEATURE_THRESHOLD = np.float32(1e-7)


@njit(nogil=True, cache=True)
def _order_key(v):  # pragma: no cover - compiled
    """float32 bits -> uint32 whose integer order is the float order."""
    u = np.uint64(v)
    return (~u & np.uint64(0xFFFFFFFF)) if u >> np.uint64(31) else (u | np.uint64(0x80000000))


_BLOCK = 64  # features copied to a column-major buffer at a time


@njit(nogil=True, cache=True)
def presort_columns(x, colmin, threshold):  # pragma: no cover - compiled
    """Every column of ``x`` (``n x d`` float32) sorted: the flat layout of :class:`.Presort`.

    Per column: one header slot (id ``n``), then the rows above the column minimum by
    ascending value (ties by row). Returns ``sid``, ``glg`` (int64: value group ``G``, the
    dense rank with 0 = the minimum, packed as ``LG << gbits | G``; ``LG`` counts the
    groups ``g`` with ``float32(v_g + threshold) < v``, bounds that only grow with ``g``,
    so one pointer walks them), ``hdr`` and ``gbits``. Columns are read ``_BLOCK`` at a
    time into a small column-major buffer, so no transposed copy of ``x`` is made.
    """
    n, d = x.shape
    counts = np.zeros(d, dtype=np.int64)
    for r in range(n):
        for f in range(d):
            counts[f] += x[r, f] > colmin[f]
    total = d + counts.sum()
    sid = np.full(total, n, dtype=np.int32)
    group = np.zeros(total, dtype=np.int64)
    lim = np.zeros(total, dtype=np.int32)
    hdr = np.empty(d, dtype=np.int64)
    keys = np.empty(n, dtype=np.uint64)
    gv = np.empty(n + 1, dtype=np.float32)
    col = np.empty((min(_BLOCK, d), n), dtype=np.float32)
    bits = col.view(np.uint32)
    gmax = 0
    pos = 0
    for f0 in range(0, d, _BLOCK):
        width = min(_BLOCK, d - f0)
        for r in range(n):
            for j in range(width):
                col[j, r] = x[r, f0 + j]
        for j in range(width):
            f = f0 + j
            hdr[f] = pos
            c = 0
            for r in range(n):
                if col[j, r] > colmin[f]:
                    keys[c] = (_order_key(bits[j, r]) << np.uint64(32)) | np.uint64(r)
                    c += 1
            ks = np.sort(keys[:c])
            gv[0] = colmin[f]
            g = 0
            p = 0  # first group whose bound reaches the value
            for i in range(c):
                r = np.int64(ks[i] & np.uint64(0xFFFFFFFF))
                v = col[j, r]
                if g == 0 or v != gv[g]:
                    g += 1
                    gv[g] = v
                    while np.float32(np.float64(gv[p]) + np.float64(threshold)) < v:
                        p += 1
                sid[pos + 1 + i] = r
                group[pos + 1 + i] = g
                lim[pos + 1 + i] = p
            gmax = max(gmax, g)
            pos += c + 1
    gbits = 1
    while (gmax + 1) >> gbits:
        gbits += 1
    for e in range(total):  # pack in place: no temporaries of the whole layout
        group[e] |= np.int64(lim[e]) << gbits
    return sid, group, hdr, gbits


def column_minima(X: np.ndarray) -> np.ndarray:
    """Each column's minimum, reduced along a contiguous copy of ``_BLOCK`` columns at a time.

    The same bits as ``X.T.copy().min(axis=1)`` (which of -0.0 and +0.0 is kept depends on
    the reduction's order) without the transposed copy of all of ``X``.
    """
    n, d = X.shape
    if not n:
        return np.zeros(d, dtype=np.float32)
    out = np.empty(d, dtype=np.float32)
    for f0 in range(0, d, _BLOCK):
        out[f0 : f0 + _BLOCK] = np.ascontiguousarray(X[:, f0 : f0 + _BLOCK].T).min(axis=1)
    return out


class Presort:
    """Every feature of ``X`` (float32, finite) sorted once; reusable for any row subset.

    Flat layout, feature after feature: one header slot (the samples at the
    column minimum) then the samples above it in ascending value order.
    ``sid`` holds row indices (``n_rows`` in header slots), ``glg`` packs
    ``LG << gbits | G`` (int32 when it fits).
    """

    def __init__(self, X: np.ndarray) -> None:
        X = np.asarray(X, dtype=np.float32)
        if not np.isfinite(X).all():
            raise ValueError("Presort needs finite features")
        n, d = X.shape
        self.X = X
        self.n_rows, self.n_features = n, d
        X = np.ascontiguousarray(X)
        self.colmin = column_minima(X)
        sid, glg, self.hdr, gbits = presort_columns(X, self.colmin, FEATURE_THRESHOLD)
        self.gbits = int(gbits)
        self.sid = sid
        self.glg = glg.astype(np.int32) if 2 * self.gbits <= 31 else glg

    def value(self, feature: int, row: int) -> float:
        return float(self.X[row, feature])
