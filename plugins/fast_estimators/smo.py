"""libsvm's two-class C-SVC solver replayed on a precomputed kernel block, vectorised.

scikit-learn's ``SVC`` solves the dual with libsvm's SMO (Fan, Chen & Lin, JMLR 2005:
second-order working-set selection, shrinking, gradient reconstruction). Each
iteration libsvm walks its active set with branchy scalar loops. :func:`solve` takes
the same steps on the same numbers - the float32 ``Q`` entries libsvm's kernel cache
holds, the float64 gradients, the same comparisons and ties - so every iteration picks
the same pair and the result (dual coefficients, ``rho``, iteration count) is libsvm's
bit for bit; its loops (:mod:`.smo_kernels`) run over plain arrays in SIMD.

- **Order.** libsvm's order of variables, which shrinking permutes and which breaks its
  ties ("the last index wins"), is kept as a position per variable (``pos``, and its
  inverse ``perm``) while the arrays stay in the kernel block's row order; a tie goes
  to the largest position. Sums whose order matters (gradient reconstruction,
  ``rho``) walk the variables by position.
- **Working set.** While most variables are active the loops run over all of them
  (inactive ones are never picked, and their gradients are rebuilt before libsvm reads
  them) and read ``Q`` rows from the kernel block. Once shrinking has left at most a
  given share active (``svm_replay.COMPACT_FRACTION``), the active variables and
  their float32 ``Q`` block are copied into compact arrays and the loops run over
  those; this repeats as the set shrinks, and all variables come back when libsvm
  unshrinks.
- **Gradients** are kept as ``y_b G_b``: a sign distributes over IEEE sums and
  products, so libsvm's updates need no labels in the inner loops.

:func:`plugins.fast_estimators.svm_replay.replay_matches_libsvm` checks the replay
against ``SVC`` once per process before it is trusted.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from plugins.fast_estimators.smo_kernels import (
    FREE,
    LOWER,
    UPPER,
    add_gbar,
    last_position,
    max_low,
    max_violation,
    min_objective,
    q_entry,
    refresh_flags,
    set_flags,
    status_of,
    two_variable_step,
    update_gradient,
)


@njit(cache=True)
def _sum_rows(K, rows, cols, coef, acc):  # pragma: no cover - compiled
    """``acc[r] += sum_t coef[t] f(K[rows[r], cols[t]])``, each sum in the order of ``t``
    (four rows at a time, so that four sums are in flight)."""
    m = rows.shape[0]
    r = 0
    while r + 4 <= m:
        k0, k1, k2, k3 = K[rows[r]], K[rows[r + 1]], K[rows[r + 2]], K[rows[r + 3]]
        a0, a1, a2, a3 = acc[r], acc[r + 1], acc[r + 2], acc[r + 3]
        for t in range(cols.shape[0]):
            c, w = cols[t], coef[t]
            a0 += w * np.float64(np.float32(k0[c]))
            a1 += w * np.float64(np.float32(k1[c]))
            a2 += w * np.float64(np.float32(k2[c]))
            a3 += w * np.float64(np.float32(k3[c]))
        acc[r], acc[r + 1], acc[r + 2], acc[r + 3] = a0, a1, a2, a3
        r += 4
    for rest in range(r, m):
        kr = K[rows[rest]]
        a = acc[rest]
        for t in range(cols.shape[0]):
            a += coef[t] * np.float64(np.float32(kr[cols[t]]))
        acc[rest] = a


@njit(cache=True)
def _reconstruct(K, G, Gbar, alpha, ys, status, perm, active):  # pragma: no cover - compiled
    """libsvm's ``reconstruct_gradient``: inactive gradients from ``G_bar`` and the free variables.

    Each inactive ``G_j`` starts at ``G_bar_j - 1`` and adds ``alpha_i Q_ij`` over the free
    active ``i`` in libsvm's order, as libsvm does whichever of its two loop orders it
    picks (the same pick here); kept as ``y_j G_j``, the terms are ``(y_i alpha_i) f_ij``
    exactly, so the sums can run over contiguous rows.
    """
    n = G.shape[0]
    if active == n:
        return
    inactive = perm[active:].copy()
    acc = ys[inactive] * (Gbar[inactive] + -1.0)
    free = np.array([perm[a] for a in range(active) if status[perm[a]] == FREE], np.int64)
    coef = ys[free] * alpha[free]
    nr_free = free.shape[0]
    if nr_free * n > 2 * active * (n - active):  # libsvm: a row per inactive variable
        _sum_rows(K, inactive, free, coef, acc)
    else:  # libsvm: a row per free variable, added to every inactive one in turn
        for t in range(nr_free):
            row, w = K[free[t]], coef[t]
            for r in range(inactive.shape[0]):
                acc[r] += w * np.float64(np.float32(row[inactive[r]]))
    G[inactive] = ys[inactive] * acc


@njit(cache=True)
def _shrunk(b, G, ys, status, g1, g2):  # pragma: no cover - compiled
    s = status[b]
    if s == UPPER:
        return -G[b] > (g1 if ys[b] > 0 else g2)
    if s == LOWER:
        return G[b] > (g2 if ys[b] > 0 else g1)
    return False


@njit(cache=True)
def _shrink(K, G, Gbar, alpha, ys, status, perm, pos, act, up, low, active, unshrink, eps):
    """libsvm's ``do_shrinking`` on the full arrays; returns (active size, unshrink flag)."""  # noqa: D401
    n = G.shape[0]
    g1 = -np.inf
    g2 = -np.inf
    for b in range(n):
        if up[b]:
            g1 = max(g1, -ys[b] * G[b])
        if low[b]:
            g2 = max(g2, ys[b] * G[b])
    old = active
    if not unshrink and g1 + g2 <= eps * 10:
        unshrink = True
        _reconstruct(K, G, Gbar, alpha, ys, status, perm, active)
        active = n
        old = n
        act[:] = True
    a = 0
    while a < active:
        if _shrunk(perm[a], G, ys, status, g1, g2):
            active -= 1
            while active > a:
                if not _shrunk(perm[active], G, ys, status, g1, g2):
                    pa, pc = perm[a], perm[active]
                    perm[a], perm[active] = pc, pa
                    pos[pa], pos[pc] = active, a
                    break
                active -= 1
        a += 1
    for a in range(active, old):
        act[perm[a]] = False
    refresh_flags(ys, status, act, up, low)
    return active, unshrink


@njit(cache=True)
def _rho(G, ys, status, perm, active):  # pragma: no cover - compiled
    """libsvm's ``calculate_rho`` over the active variables, in libsvm's order."""
    nr_free = 0
    ub, lb, sum_free = np.inf, -np.inf, 0.0
    for a in range(active):
        b = perm[a]
        yg = ys[b] * G[b]
        s = status[b]
        if (s == UPPER and ys[b] < 0) or (s == LOWER and ys[b] > 0):
            ub = ub if ub < yg else yg
        elif s != FREE:
            lb = lb if lb > yg else yg
        else:
            nr_free += 1
            sum_free += yg
    return sum_free / nr_free if nr_free > 0 else (ub + lb) / 2


@njit(cache=True)
def _select(R, yG, QD, up, low, pos, perm, widx, v, o, eps, m):  # pragma: no cover - compiled
    """libsvm's ``select_working_set`` given ``v``/``m`` (:func:`max_violation`): (i, j) or (-1, -1).

    Its stopping test ``Gmax + Gmax2 < eps`` needs ``Gmax2`` only when the chosen ``j``
    does not already refute it: rounding is monotone, so ``Gmax + Gmax2 >= Gmax + y_j G_j``.
    """
    if m == -np.inf:
        return -1, -1
    i = widx[perm[last_position(pos, v, m)]]
    gmax = v[i]
    om = min_objective(yG, low, R[i], QD[i], QD, gmax, o)
    if om == np.inf:
        return -1, -1
    j = widx[perm[last_position(pos, o, om)]]
    if gmax + yG[j] < eps and gmax + max_low(yG, low) < eps:
        return -1, -1
    return i, j


@njit(cache=True)
def _phase(R, w, yG, alpha, status, up, low, v, o, state, eps, counter):  # pragma: no cover
    """Iterations on the working set until libsvm would shrink next (returns 1) or finds
    its active set optimal (returns 0). ``R``: the rows' kernel values over the working
    set; ``w``: its (ys, QD, C, pos, S, widx); ``state``: (perm, K, ys, G_bar) of all
    variables. Returns (reason, counter, iterations done)."""
    ys, QD, C, pos, S, widx = w
    perm, K, ysp, Gbar = state
    done = 0
    m = max_violation(yG, up, v)
    while True:
        i, j = _select(R, yG, QD, up, low, pos, perm, widx, v, o, eps, m)
        if j < 0:
            return 0, counter, done
        yi, yj = ys[i], ys[j]
        ci, cj = C[i], C[j]
        oai, oaj = alpha[i], alpha[j]
        qij = q_entry(yi * yj, R[i, j])
        gi, gj = yi * yG[i], yj * yG[j]
        ai, aj = two_variable_step(oai, oaj, yi, yj, gi, gj, QD[i] + QD[j], qij, ci, cj)
        alpha[i], alpha[j] = ai, aj
        ui, uj = status[i] == UPPER, status[j] == UPPER
        status[i] = status_of(ai, ci)
        status[j] = status_of(aj, cj)
        set_flags(i, ys, status, up, low)
        set_flags(j, ys, status, up, low)
        m = update_gradient(yG, up, R[i], R[j], yi * (ai - oai), yj * (aj - oaj), v)
        if ui != (status[i] == UPPER):
            add_gbar(Gbar, ysp, K[S[i]], yi, ci, -1 if ui else 1)
        if uj != (status[j] == UPPER):
            add_gbar(Gbar, ysp, K[S[j]], yj, cj, -1 if uj else 1)
        done += 1
        counter -= 1
        if counter == 0:
            return 1, counter, done


@njit(cache=True)
def _compact_rows(K, buf, keep, c_old, from_block):  # pragma: no cover - compiled
    """The float32 kernel block of the kept variables, into ``buf``: from ``K``
    (``keep``: rows of ``K``), or in place from the ``c_old``-wide block already in
    ``buf`` (``keep``: its rows; rows and columns only move towards the front)."""
    c = keep.shape[0]
    for k in range(c):
        if from_block:
            src = K[keep[k]]
            for m in range(c):
                buf[k * c + m] = np.float32(src[keep[m]])
        else:
            base = keep[k] * c_old
            for m in range(c):
                buf[k * c + m] = buf[base + keep[m]]
    return buf[: c * c].reshape(c, c)


@njit(cache=True)
def _run_phase(full, K, F, S, G, alpha, status, ys, QD, C, pos, perm, up, low, Gbar, eps, counter):
    """One :func:`_phase` on working arrays gathered from (and written back to) the full ones."""  # noqa: D401
    n = G.shape[0]
    widx = np.full(n, -1)
    widx[S] = np.arange(S.shape[0])
    ysw = ys[S]
    yG = ysw * G[S]
    aw, stw, upw, loww = alpha[S], status[S], up[S], low[S]
    v, o = np.empty(S.shape[0]), np.empty(S.shape[0])
    w = (ysw, QD[S], C[S], pos[S], S, widx)
    state = (perm, K, ys, Gbar)
    if full:
        code, counter, done = _phase(K, w, yG, aw, stw, upw, loww, v, o, state, eps, counter)
    else:
        code, counter, done = _phase(F, w, yG, aw, stw, upw, loww, v, o, state, eps, counter)
    G[S] = ysw * yG
    alpha[S] = aw
    status[S] = stw
    up[S] = upw
    low[S] = loww
    return code, counter, done


@njit(cache=True, nogil=True)
def solve(K, QD, ys, C, pos, eps, shrinking, compact_at):  # pragma: no cover - compiled
    """libsvm's ``Solver::Solve`` for C-SVC (``p = -1``, ``alpha = 0`` to start).

    ``K``: the kernel block (rows in any order, C-contiguous; float64, or float32 - all
    libsvm reads of it are rounded to float32 - with its float64 diagonal ``QD``); ``ys``: +1.0 /
    -1.0 per row; ``C``: the bound per row; ``pos``: each row's place in libsvm's order
    (its class-grouped order); ``compact_at``: the working set is compacted when at most
    this share of it is still active. Returns ``(y_i alpha_i per row, rho, iterations,
    compactions)``; the last says how often the working set was compacted (diagnostics).
    """
    n = K.shape[0]
    pos = pos.astype(np.int64)
    perm = np.empty(n, np.int64)
    for b in range(n):
        perm[pos[b]] = b
    alpha = np.zeros(n)
    G = np.full(n, -1.0)
    Gbar = np.zeros(n)
    status = np.empty(n, np.int8)
    for b in range(n):
        status[b] = status_of(0.0, C[b])
    for a in range(n):  # alpha = 0: only a zero bound starts anything in G / G_bar
        i = perm[a]
        if status[i] != LOWER:
            for b in range(n):
                qi = q_entry(ys[i] * ys[b], K[i, b])
                G[b] += alpha[i] * qi
                if status[i] == UPPER:
                    Gbar[b] += C[i] * qi
    act = np.ones(n, np.bool_)
    up = np.zeros(n, np.bool_)
    low = np.zeros(n, np.bool_)
    refresh_flags(ys, status, act, up, low)
    ident = np.arange(n)
    S = ident
    buf = np.empty(0, np.float32)
    F = buf.reshape(0, 0)
    full = True
    active = n
    unshrink = False
    final = False
    compactions = 0
    it = 0
    counter = min(n, 1000)
    while True:
        code, counter, done = _run_phase(
            full, K, F, S, G, alpha, status, ys, QD, C, pos, perm, up, low, Gbar, eps, counter
        )
        it += done
        if code == 0:  # the active set is optimal: reconstruct, then look again over all
            if final:
                break
            _reconstruct(K, G, Gbar, alpha, ys, status, perm, active)
            active = n
            act[:] = True
            refresh_flags(ys, status, act, up, low)
            full, S = True, ident
            counter = 1  # libsvm shrinks right after the next step
            final = True
            continue
        final = False
        counter = min(n, 1000)
        if not shrinking:
            continue
        was = unshrink  # the flags are current: each phase writes them back
        active, unshrink = _shrink(
            K, G, Gbar, alpha, ys, status, perm, pos, act, up, low, active, unshrink, eps
        )
        if unshrink != was:  # unshrinking brought every variable back
            full, S = True, ident
        c = S.shape[0]
        if active <= compact_at * c:
            if full:
                keep = np.flatnonzero(act)
                if buf.shape[0] < keep.shape[0] ** 2:
                    buf = np.empty(keep.shape[0] ** 2, np.float32)
                F = _compact_rows(K, buf, keep, c, True)
                S = keep
            else:
                keep = np.flatnonzero(act[S])
                F = _compact_rows(K, buf, keep, c, False)
                S = S[keep]
            full = False
            compactions += 1
    rho = _rho(G, ys, status, perm, active)
    return alpha * ys, rho, it, compactions


@njit(cache=True, nogil=True)
def decision_sums(k_test, sv, coef, rho):  # pragma: no cover - compiled
    """libsvm's ``svm_predict_values`` for two classes: ``sum_k coef_k K[t, sv_k] - rho``."""
    n = k_test.shape[0]
    out = np.empty(n)
    for t in range(n):
        row = k_test[t]
        s = 0.0
        for k in range(sv.shape[0]):
            s += coef[k] * row[sv[k]]
        out[t] = s - rho
    return out
