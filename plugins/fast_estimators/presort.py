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


@njit(nogil=True, cache=True)
def presort_columns(xt, colmin, threshold):  # pragma: no cover - compiled
    """Every column of ``xt`` (``d x n`` float32) sorted: the flat layout of :class:`.Presort`.

    Per column: one header slot (id ``n``), then the rows above the column minimum by
    ascending value (ties by row). Returns ``sid``, value group ``G`` (dense rank, 0 = the
    minimum), ``LG`` (groups ``g`` with ``float32(v_g + threshold) < v``; bounds only grow
    with ``g``, so one pointer walks them) and ``hdr``.
    """
    d, n = xt.shape
    bits = xt.view(np.uint32)
    counts = np.zeros(d, dtype=np.int64)
    for f in range(d):
        c = 0
        for r in range(n):
            c += xt[f, r] > colmin[f]
        counts[f] = c
    total = d + counts.sum()
    sid = np.full(total, n, dtype=np.int32)
    group = np.zeros(total, dtype=np.int64)
    lim = np.zeros(total, dtype=np.int64)
    hdr = np.empty(d, dtype=np.int64)
    keys = np.empty(n, dtype=np.uint64)
    gv = np.empty(n + 1, dtype=np.float32)
    pos = 0
    for f in range(d):
        hdr[f] = pos
        c = 0
        for r in range(n):
            if xt[f, r] > colmin[f]:
                keys[c] = (_order_key(bits[f, r]) << np.uint64(32)) | np.uint64(r)
                c += 1
        ks = np.sort(keys[:c])
        gv[0] = colmin[f]
        g = 0
        p = 0  # first group whose bound reaches the value
        for j in range(c):
            r = np.int64(ks[j] & np.uint64(0xFFFFFFFF))
            v = xt[f, r]
            if g == 0 or v != gv[g]:
                g += 1
                gv[g] = v
                while np.float32(np.float64(gv[p]) + np.float64(threshold)) < v:
                    p += 1
            sid[pos + 1 + j] = r
            group[pos + 1 + j] = g
            lim[pos + 1 + j] = p
        pos += c + 1
    return sid, group, lim, hdr


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
        xt = np.ascontiguousarray(X.T)
        self.colmin = xt.min(axis=1) if n else np.zeros(d, dtype=np.float32)
        sid, group, lim, self.hdr = presort_columns(xt, self.colmin, FEATURE_THRESHOLD)
        self.gbits = max(1, int(group.max(initial=0) + 1).bit_length())
        dtype = np.int32 if 2 * self.gbits <= 31 else np.int64
        self.sid = sid
        self.glg = ((lim << self.gbits) | group).astype(dtype)

    def value(self, feature: int, row: int) -> float:
        return float(self.X[row, feature])
