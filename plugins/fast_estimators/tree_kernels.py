"""Compiled (numba) loops of :mod:`.tree_builder`: a node's split scan and its partition.

A node holds, for every feature ``f``, the entries ``ent[starts[f]:ends[f]]`` of its
samples above the column minimum in value order; the node's other samples sit at the
minimum, before them (value group 0). An entry packs ``key << sbits | sample`` with
``key = (LG << gbits | G) << ybits | class`` (:mod:`.presort`). For two classes
``ones[e]`` counts the class-1 entries of the feature up to ``e``, so a run of split
positions is bounded from two counts, without reading its entries.

The arithmetic is the Criterion's, operation for operation, in IEEE float64 (numba: no
fast-math, no contraction), so every proxy and impurity is the value scikit-learn
computes, bit for bit. ``nogil``: two folds' trees grow side by side on the fit threads.
``cache=True``: compiled once per machine (seconds), then loaded from ``__pycache__``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

COARSE, FINE = 256, 32  # positions per bound check: a coarse run, then its fine runs


@njit(nogil=True, cache=True)
def _exact_proxy(sql, sqr, wl, wr):  # pragma: no cover - compiled
    """``Gini.proxy_impurity_improvement`` and the children's impurities, in its order."""
    il = 1.0 - sql / (wl * wl)
    ir = 1.0 - sqr / (wr * wr)
    return -wr * ir - wl * il, il, ir


@njit(nogil=True, cache=True)
def _q(a0, a1, b0, b1, wl, wr):  # pragma: no cover - compiled
    """``sum_c L_c^2 / n_L + sum_c R_c^2 / n_R`` of a binary split; the left term is 0 at
    ``n_L = 0`` (its limit: ``|L|^2 / n_L <= n_L``)."""
    right = (b0 * b0 + b1 * b1) / wr
    return right if wl == 0.0 else (a0 * a0 + a1 * a1) / wl + right


@njit(nogil=True, cache=True)
def _box_bound(l0, l1, h0, h1, t0, t1, wm):  # pragma: no cover - compiled
    """Largest ``Q`` at the corners of the box ``[l0, h0] x [l1, h1]`` of left counts.

    ``Q`` is convex in the left counts (a sum of quadratic-over-linear terms), so no
    split whose counts lie in the box scores more.
    """
    bound = -np.inf
    for x0 in (l0, h0):
        for x1 in (l1, h1):
            wl = x0 + x1
            bound = max(bound, _q(x0, x1, t0 - x0, t1 - x1, wl, wm - wl))
    return bound


@njit(nogil=True, cache=True)
def _outputs(d, k):  # pragma: no cover - compiled
    """A scan's per-feature results: constant flag, best proxy, its position, ``n_left``,
    left class counts, the children's impurities."""
    return (
        np.zeros(d, dtype=np.bool_),
        np.full(d, -np.inf),
        np.full(d, -1, dtype=np.int64),
        np.zeros(d, dtype=np.int64),
        np.zeros((d, k), dtype=np.int64),
        np.zeros(d),
        np.zeros(d),
    )


@njit(nogil=True, cache=True)
def _is_constant(ent, start, end, m, gshift, gmask, lshift):  # pragma: no cover - compiled
    """Whether the feature's last value is within the threshold of its first (no split)."""
    if end == start:
        return True
    g_first = 0 if m - (end - start) > 0 else (ent[start] >> gshift) & gmask
    return not (g_first < (ent[end - 1] >> lshift))


@njit(nogil=True, cache=True)
def _keep(out, f, proxy, pos, start, nl, left, il, ir):  # pragma: no cover - compiled
    """Record position ``pos`` (before ``start``: the column-minimum block) as ``f``'s best."""
    out[1][f] = proxy
    out[2][f] = pos if pos >= start else -1
    out[3][f] = nl
    for c in range(left.shape[0]):
        out[4][f, c] = left[c]
    out[5][f] = il
    out[6][f] = ir


@njit(nogil=True, cache=True)
def scan_binary(ent, ones, starts, ends, m, total, msl, ybits, gbits, sbits):  # pragma: no cover
    """Best split of every feature of a two-class node (``BestSplitter``'s inner loop).

    Returns, per feature: constant flag, best proxy, its position (the entry left of the
    split; ``-1``: the column-minimum block), ``n_left``, left class counts and the
    children's impurities. Ties within a feature keep the first position (the smallest
    ``n_left``), as the splitter's strict ``>`` does.

    Only the features whose best is the node's best are exact; the others may hold a
    smaller value or ``-inf``. A run of positions is scored only where its bound
    (:func:`_box_bound`, ``Q = proxy + m``) reaches the best proxy so far minus ``1e-12
    m``: squared counts are integers below 2^53, so their sums are exact in any order,
    and the slack covers the bound's few ulps of rounding.
    """
    d = starts.shape[0]
    gmask = (1 << gbits) - 1
    lshift = ybits + gbits + sbits
    gshift = ybits + sbits
    out = _outputs(d, 2)
    constant, best = out[0], out[1]
    pair = np.zeros(2, dtype=np.int64)
    wm = float(m)
    t0 = float(total[0])
    t1 = float(total[1])
    cut = -np.inf  # best proxy so far + m - slack
    top = -np.inf
    slack = 1e-12 * wm
    lo_pos_n = max(msl, 1)
    hi_pos_n = min(m - msl, m - 1)
    for f in range(d):
        start = starts[f]
        end = ends[f]
        zeros = m - (end - start)
        if _is_constant(ent, start, end, m, gshift, gmask, lshift):
            constant[f] = True
            continue
        base1 = total[1] - ones[end - 1]  # class 1 at the column minimum
        # position p (start - 1 <= p <= end - 2) counts the entries up to p
        p_lo = max(start - 1, start - 1 + lo_pos_n - zeros)  # first p with n_L >= msl
        p_hi = min(end - 2, start - 1 + hi_pos_n - zeros)
        c0 = p_lo
        while c0 <= p_hi:
            c1 = min(c0 + COARSE - 1, p_hi)
            skip = False
            if cut > -np.inf:
                a1 = base1 + (ones[c0] if c0 >= start else 0)
                b1 = base1 + (ones[c1] if c1 >= start else 0)
                an = zeros + (c0 - start + 1)
                bn = zeros + (c1 - start + 1)
                skip = _box_bound(an - a1, a1, bn - b1, b1, t0, t1, wm) < cut
            if not skip:
                q0 = c0
                while q0 <= c1:
                    q1 = min(q0 + FINE - 1, c1)
                    fine_skip = False
                    if cut > -np.inf and c1 > c0 + FINE - 1:
                        a1 = base1 + (ones[q0] if q0 >= start else 0)
                        b1 = base1 + (ones[q1] if q1 >= start else 0)
                        an = zeros + (q0 - start + 1)
                        bn = zeros + (q1 - start + 1)
                        fine_skip = _box_bound(an - a1, a1, bn - b1, b1, t0, t1, wm) < cut
                    if not fine_skip:
                        for p in range(q0, q1 + 1):
                            g = 0 if p < start else (ent[p] >> gshift) & gmask
                            if not (g < (ent[p + 1] >> lshift)):
                                continue
                            n1 = base1 + (ones[p] if p >= start else 0)
                            nl = zeros + (p - start + 1)
                            x1 = float(n1)
                            x0 = float(nl - n1)
                            y0 = t0 - x0
                            y1 = t1 - x1
                            sql = x0 * x0 + x1 * x1
                            sqr = y0 * y0 + y1 * y1
                            wl = float(nl)
                            if sql / wl + sqr / (wm - wl) < cut:
                                continue
                            proxy, il, ir = _exact_proxy(sql, sqr, wl, wm - wl)
                            if proxy > best[f]:
                                pair[0] = nl - n1
                                pair[1] = n1
                                _keep(out, f, proxy, p, start, nl, pair, il, ir)
                                if proxy > top:
                                    top = proxy
                                    cut = top + wm - slack
                    q0 = q1 + 1
            c0 = c1 + 1
    return out


@njit(nogil=True, cache=True)
def scan_classes(ent, starts, ends, m, total, msl, ybits, gbits, sbits):  # pragma: no cover
    """:func:`scan_binary` for any number of classes (same returns), with running counts.

    A run of ``FINE`` positions is skipped when ``sum_c max L_c^2 / min n_L + sum_c max
    R_c^2 / min n_R`` (each term only grows) is below the best proxy so far.
    """
    d = starts.shape[0]
    k = total.shape[0]
    ymask = (1 << ybits) - 1
    gmask = (1 << gbits) - 1
    lshift = ybits + gbits + sbits
    gshift = ybits + sbits
    out = _outputs(d, k)
    constant, best = out[0], out[1]
    wm = float(m)
    cut = -np.inf
    top = -np.inf
    slack = 1e-12 * wm
    left = np.zeros(k, dtype=np.int64)
    hi_left = np.zeros(k, dtype=np.int64)
    for f in range(d):
        start = starts[f]
        end = ends[f]
        zeros = m - (end - start)
        if _is_constant(ent, start, end, m, gshift, gmask, lshift):
            constant[f] = True
            continue
        for c in range(k):
            left[c] = total[c]
        for e in range(start, end):
            left[(ent[e] >> sbits) & ymask] -= 1
        nl = zeros
        e0 = start - 1  # positions e0 .. e1 - 1; position e0 is counted in `left`
        while e0 < end - 1:
            e1 = min(e0 + FINE, end - 1)
            for c in range(k):
                hi_left[c] = left[c]
            for e in range(e0 + 1, e1):
                hi_left[(ent[e] >> sbits) & ymask] += 1
            nl_hi = nl + (e1 - 1 - e0)
            lo_n = max(nl, msl, 1)
            hi_n = min(nl_hi, m - msl, m - 1)
            skip = lo_n > hi_n
            if not skip and cut > -np.inf:
                sq_l = 0.0
                sq_r = 0.0
                for c in range(k):
                    hl = float(hi_left[c])
                    lr = float(total[c] - left[c])
                    sq_l += hl * hl
                    sq_r += lr * lr
                skip = sq_l / lo_n + sq_r / (wm - hi_n) < cut
            if skip:
                for c in range(k):
                    left[c] = hi_left[c]
                nl = nl_hi
            else:
                for e in range(e0, e1):
                    if e > e0:
                        left[(ent[e] >> sbits) & ymask] += 1
                        nl += 1
                    if nl < msl or nl > m - msl:
                        continue
                    g = 0 if e < start else (ent[e] >> gshift) & gmask
                    if not (g < (ent[e + 1] >> lshift)):
                        continue
                    sql = 0.0
                    sqr = 0.0
                    for c in range(k):
                        cnt = float(left[c])
                        sql += cnt * cnt
                        cnt = float(total[c] - left[c])
                        sqr += cnt * cnt
                    wl = float(nl)
                    if sql / wl + sqr / (wm - wl) < cut:
                        continue
                    proxy, il, ir = _exact_proxy(sql, sqr, wl, wm - wl)
                    if proxy > best[f]:
                        _keep(out, f, proxy, e, start, nl, left, il, ir)
                        if proxy > top:
                            top = proxy
                            cut = top + wm - slack
            e0 = e1
            if e0 < end - 1:  # the next run starts with its first entry counted
                left[(ent[e0] >> sbits) & ymask] += 1
                nl += 1
    return out


@njit(nogil=True, cache=True)
def partition_node(ent, ones, starts, ends, goes_left, m, sbits, binary):  # pragma: no cover
    """Stable in-place partition of every feature's entries: left-goers first.

    ``goes_left[s]`` (uint8, 0/1): sample ``s`` goes left; ``m``: the node's sample count
    (the scratch size). ``ones`` is rebuilt for both children when ``binary``. Returns
    the left child's entry count per feature: it holds ``[starts, starts + n)``, the
    right one ``[starts + n, ends)``.
    """
    d = starts.shape[0]
    smask = (1 << sbits) - 1
    n_left = np.empty(d, dtype=np.int64)
    tmp = np.empty(m + 1, dtype=ent.dtype)
    tmp_ones = np.empty(m + 1, dtype=ones.dtype)
    for f in range(d):
        w = starts[f]
        t = 0
        ones_l = 0
        ones_r = 0
        for e in range(starts[f], ends[f]):
            v = ent[e]
            go = np.int64(goes_left[v & smask])
            ent[w] = v
            tmp[t] = v
            if binary:
                cls = (v >> sbits) & 1
                ones_l += cls & go
                ones_r += cls & (1 - go)
                ones[w] = ones_l
                tmp_ones[t] = ones_r
            w += go
            t += 1 - go
        n_left[f] = w - starts[f]
        ent[w : w + t] = tmp[:t]
        if binary:
            ones[w : w + t] = tmp_ones[:t]
    return n_left


@njit(nogil=True, cache=True)
def root_entries(sid, glg, hdr, local, y, ybits, sbits, binary):  # pragma: no cover - compiled
    """The root's entries (and ``ones``) for the rows ``local >= 0``, renumbered by ``local``.

    ``sid``, ``glg``, ``hdr``: a :class:`~.presort.Presort`'s flat layout (its header slots
    are dropped). Returns ``(ent, ones, starts, ends)``.
    """
    d = hdr.shape[0]
    e_count = sid.shape[0]
    count = 0
    for f in range(d):
        end = hdr[f + 1] if f + 1 < d else e_count
        for e in range(hdr[f] + 1, end):
            count += local[sid[e]] >= 0
    ent = np.empty(count, dtype=np.int64)
    ones = np.empty(count if binary else 0, dtype=np.int32)
    starts = np.empty(d, dtype=np.int64)
    ends = np.empty(d, dtype=np.int64)
    j = 0
    for f in range(d):
        end = hdr[f + 1] if f + 1 < d else e_count
        starts[f] = j
        run = 0
        for e in range(hdr[f] + 1, end):
            s = local[sid[e]]
            if s >= 0:
                cls = np.int64(y[s])
                ent[j] = (((np.int64(glg[e]) << ybits) | cls) << sbits) | s
                if binary:
                    run += cls
                    ones[j] = run
                j += 1
        ends[f] = j
    return ent, ones, starts, ends
