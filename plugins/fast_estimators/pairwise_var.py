"""``x[rows].var()`` bit for bit without copying the rows: numpy's pairwise summation, replayed.

``np.var`` of a C-contiguous float64 array sums it twice (the values, then the
squared deviations from their mean) with numpy's pairwise summation over the
flattened array: blocks of at most 128 values summed with eight accumulators,
larger ranges split in two at a multiple of eight. :func:`rows_var` replays
exactly those additions over the virtual array ``x[rows]``, reading ``x`` in
place: the same float64 result without the ``len(rows) x d`` copy. Whether this
numpy sums that way is checked once per process (:func:`replay_matches_numpy`,
a few arrays against ``np.var``); where it does not, callers copy the rows.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

_LEAF = 128  # numpy's PW_BLOCKSIZE
_DEPTH = 64  # deeper than any halving of an int64 count down to 128


@njit(nogil=True, cache=True)
def _leaf_sum(a, n):  # pragma: no cover - compiled
    """numpy's pairwise sum of ``a[:n]``, ``n <= 128`` (its eight-accumulator block)."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[0], a[1], a[2], a[3]
    r4, r5, r6, r7 = a[4], a[5], a[6], a[7]
    m = n - n % 8
    for i in range(8, m, 8):
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(m, n):
        res += a[i]
    return res


@njit(nogil=True, cache=True)
def _leaf(x, rows, start, n, mean, centre, scratch):  # pragma: no cover - compiled
    """Sum of ``n <= 128`` values of the flattened ``x[rows]`` from ``start``.

    With ``centre``, of ``(v - mean) ** 2`` instead of ``v`` (numpy's subtract then multiply).
    """
    d = x.shape[1]
    r = start // d
    c = start - r * d
    if c + n <= d:  # within one row (most leaves)
        src = x[rows[r], c : c + n]
        if not centre:
            return _leaf_sum(src, n)
        for i in range(n):
            v = src[i] - mean
            scratch[i] = v * v
        return _leaf_sum(scratch, n)
    for i in range(n):
        v = x[rows[r], c]
        if centre:
            v = v - mean
            v = v * v
        scratch[i] = v
        c += 1
        if c == d:
            c = 0
            r += 1
    return _leaf_sum(scratch, n)


@njit(nogil=True, cache=True)
def _pairwise(x, rows, count, mean, centre):  # pragma: no cover - compiled
    """numpy's pairwise sum of the ``count`` values of the flattened ``x[rows]``.

    Its recursion (halves at a multiple of eight, leaves of at most 128 values, each
    sum ``left + right``), walked with an explicit stack: numba cannot cache recursion.
    """
    scratch = np.empty(_LEAF)
    starts = np.empty(_DEPTH, dtype=np.int64)
    sizes = np.empty(_DEPTH, dtype=np.int64)
    stage = np.empty(_DEPTH, dtype=np.int64)
    sums = np.empty(_DEPTH)
    top = 0
    starts[0], sizes[0], stage[0] = 0, count, 0
    held = 0  # values on the ``sums`` stack
    while top >= 0:
        n = sizes[top]
        if n <= _LEAF:
            sums[held] = _leaf(x, rows, starts[top], n, mean, centre, scratch)
            held += 1
            top -= 1
            continue
        half = n // 2
        half -= half % 8
        if stage[top] == 0:  # its left half next
            stage[top] = 1
            starts[top + 1], sizes[top + 1], stage[top + 1] = starts[top], half, 0
            top += 1
        elif stage[top] == 1:  # then its right half
            stage[top] = 2
            starts[top + 1], sizes[top + 1], stage[top + 1] = starts[top] + half, n - half, 0
            top += 1
        else:  # both done: left + right
            held -= 1
            sums[held - 1] = sums[held - 1] + sums[held]
            top -= 1
    return sums[0]


@njit(nogil=True, cache=True)
def _rows_var(x, rows):  # pragma: no cover - compiled
    count = rows.shape[0] * x.shape[1]
    mean = (0.0 + _pairwise(x, rows, count, 0.0, False)) / count
    return (0.0 + _pairwise(x, rows, count, mean, True)) / count


def rows_var(x: np.ndarray, rows: np.ndarray) -> float:
    """``x[rows].var()`` of a C-contiguous float64 ``x``, without copying the rows."""
    if len(rows) == 0 or x.shape[1] == 0:
        return float("nan")
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if rows.min() < 0 or rows.max() >= len(x):
        raise IndexError(f"row indices must lie in [0, {len(x)}); got {rows.min()}..{rows.max()}")
    return float(_rows_var(np.ascontiguousarray(x, dtype=np.float64), rows))


@functools.cache
def replay_matches_numpy() -> bool:
    """Whether :func:`rows_var` reproduces this numpy's ``var`` (checked once per process)."""
    rng = np.random.default_rng(20261202)
    for n, d in ((3, 5), (40, 37), (97, 1031), (300, 1024)):
        x = rng.standard_normal((n + 7, d)) * 10.0 ** rng.uniform(-4, 4, (n + 7, d))
        rows = np.sort(rng.choice(n + 7, size=n, replace=False))
        if rows_var(x, rows) != x[rows].var():
            return False
    return True
