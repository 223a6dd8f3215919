"""Every feature of a float32 matrix sorted once, reusable for any row subset (any fold).

Flat layout, feature after feature: one header slot standing for all samples
at the column minimum, then the samples above it in ascending value order,
with packed value groups (see :mod:`.tree_builder` for how splits use them).
Memory is O(n x d): a few bytes per non-minimum entry.
"""

from __future__ import annotations

import numpy as np

FEATURE_THRESHOLD = np.float32(1e-7)


def _order_bits(v: np.ndarray) -> np.ndarray:
    """float32 -> uint64 whose integer order is the float order."""
    u = v.view(np.uint32).astype(np.uint64)
    neg = (u >> np.uint64(31)).astype(bool)
    return np.where(neg, ~u & np.uint64(0xFFFFFFFF), u | np.uint64(0x80000000))


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
        flat = np.flatnonzero(xt > self.colmin[:, None])
        sbits, cbits = max(1, int(n).bit_length()), max(1, int(d).bit_length())
        if cbits + 32 + sbits <= 63 and n:
            col, rows = np.divmod(flat, n)
            key = (col.astype(np.uint64) << np.uint64(32 + sbits)) | (
                _order_bits(xt.ravel().take(flat)) << np.uint64(sbits)
            )
            key |= rows.astype(np.uint64)
            key.sort()
            col = (key >> np.uint64(32 + sbits)).astype(np.int64)
            rows = (key & np.uint64((1 << sbits) - 1)).astype(np.int64)
            del key
        else:  # pragma: no cover - huge inputs
            col, rows = np.divmod(flat, max(n, 1))
            order = np.lexsort((rows, xt.ravel().take(flat), col))
            col, rows = col[order], rows[order]
        del flat
        vals = xt.ravel().take(col * n + rows)
        del xt
        counts = np.bincount(col, minlength=d)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        ne = len(vals)
        # value groups: 0 = column minimum, then dense ranks of distinct values
        first = np.ones(ne, dtype=bool)
        if ne:
            first[1:] = (col[1:] != col[:-1]) | (vals[1:] != vals[:-1])
        gcum = np.cumsum(first)
        base = np.zeros(d, dtype=np.int64)
        base[counts > 0] = gcum[starts[counts > 0]] - 1
        group = gcum - np.repeat(base, counts)
        del gcum
        lim = self._limits(col, vals, first, group, starts, counts)
        self.gbits = max(1, int(group.max(initial=0) + 1).bit_length())
        dtype = np.int32 if 2 * self.gbits <= 31 else np.int64
        total = ne + d
        self.hdr = starts + np.arange(d)
        self.sid = np.full(total, n, dtype=np.int32)
        self.glg = np.zeros(total, dtype=dtype)
        pos = np.arange(ne) + col + 1
        self.sid[pos] = rows
        self.glg[pos] = (lim << self.gbits) | group

    def _limits(self, col, vals, first, group, starts, counts) -> np.ndarray:
        """``LG``: number of groups ``g`` of the column with ``float32(v_g + 1e-7) < v``.

        Equal to ``G`` except in chains of distinct values closer than 1e-7.
        """
        lim = group.copy()
        if not len(vals):
            return lim
        prev = np.empty_like(vals)
        prev[1:] = vals[:-1]
        colfirst = starts[counts > 0]
        prev[colfirst] = self.colmin[col[colfirst]]
        close = first & (vals <= prev + FEATURE_THRESHOLD)
        if not close.any():
            return lim
        # per-column group tables, group 0 = column minimum: gv[gstart[f] + g]
        gidx = np.flatnonzero(first)
        ngroups = np.bincount(col[gidx], minlength=self.n_features) + 1
        gstart = np.concatenate(([0], np.cumsum(ngroups)[:-1]))
        gv = np.empty(int(ngroups.sum()), dtype=np.float32)
        gv[gstart] = self.colmin
        gv[gstart[col[gidx]] + group[gidx]] = vals[gidx]
        bound = gv + FEATURE_THRESHOLD  # float32 sum, as the partitioner's
        # walk each close group back to the first group whose bound reaches its value
        at = np.flatnonzero(close)
        target = vals[at]
        lo = gstart[col[at]]
        cand = lo + group[at] - 1  # bound[cand] >= target (close)
        active = np.flatnonzero(cand > lo)
        while len(active):
            step = bound[cand[active] - 1] >= target[active]
            active = active[step]
            cand[active] -= 1
            active = active[cand[active] > lo[active]]
        glim = np.arange(len(gv)) - np.repeat(gstart, ngroups)
        glim[gstart[col[at]] + group[at]] = cand - lo
        return glim[gstart[col] + group]

    def subset(self, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(sid, glg, hdr)`` restricted to ``rows`` (sid renumbered 0..len(rows)-1)."""
        if rows is None:
            return self.sid, self.glg, self.hdr
        rows = np.asarray(rows, dtype=np.int64)
        local = np.full(self.n_rows + 1, -1, dtype=np.int32)  # n < 2^31 (sid is int32)
        local[rows] = np.arange(len(rows), dtype=np.int32)
        local[self.n_rows] = len(rows)
        mapped = local.take(self.sid)
        keep = np.flatnonzero(mapped >= 0)
        return mapped.take(keep), self.glg.take(keep), np.searchsorted(keep, self.hdr)

    def value(self, feature: int, row: int) -> float:
        return float(self.X[row, feature])
