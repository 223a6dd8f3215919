"""The per-variable loops of :mod:`.smo`, written so that LLVM vectorises them.

Each loop does, for every variable of the working arrays, what one of libsvm's
scalar loops does for one variable - the same float32 ``Q`` entries, the same
float64 operations in the same order - so its results are libsvm's bit for bit.
Running maxima and minima use LLVM's ``maxnum``/``minnum`` (which vectorise); their
arguments are never NaN, and which of two equal zeros they return does not matter
because the value of the winning variable is read back from the stored array.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

LOWER, UPPER, FREE = 0, 1, 2
"""libsvm's ``alpha_status`` values."""
TAU = 1e-12
"""libsvm's floor for a non-positive quadratic coefficient."""


def _binary_intrinsic(name: str):
    @intrinsic
    def call(typingctx, a, b):  # pragma: no cover - compiled
        sig = types.float64(types.float64, types.float64)

        def codegen(context, builder, signature, args):
            d = ir.DoubleType()
            fn = builder.module.declare_intrinsic(name, [d], ir.FunctionType(d, [d, d]))
            return builder.call(fn, args, fastmath=("nnan", "nsz"))

        return sig, codegen

    return call


vmax = _binary_intrinsic("llvm.maxnum")
vmin = _binary_intrinsic("llvm.minnum")


@njit(cache=True)
def status_of(a, c):  # pragma: no cover - compiled
    """libsvm's ``update_alpha_status`` for one variable."""
    if a >= c:
        return UPPER
    if a <= 0:
        return LOWER
    return FREE


@njit(cache=True)
def set_flags(b, ys, status, up, low):  # pragma: no cover - compiled
    """Membership of the active variable ``b`` in libsvm's I_up and I_low."""
    s = status[b]
    if ys[b] > 0:
        up[b] = s != UPPER
        low[b] = s != LOWER
    else:
        up[b] = s != LOWER
        low[b] = s != UPPER


@njit(cache=True)
def refresh_flags(ys, status, act, up, low):  # pragma: no cover - compiled
    """I_up / I_low membership of every variable (inactive ones belong to neither)."""
    for b in range(ys.shape[0]):
        if act[b]:
            set_flags(b, ys, status, up, low)
        else:
            up[b] = False
            low[b] = False


@njit(cache=True)
def q_entry(yy, k):  # pragma: no cover - compiled
    """libsvm's ``Q_ij = (Qfloat)(y_i y_j K_ij)``, as the double it is used as."""
    return np.float64(np.float32(yy * k))


@njit(cache=True)
def last_position(pos, vals, target):  # pragma: no cover - compiled
    """The largest position among variables whose stored value equals ``target`` (-1: none)."""
    best = np.int64(-1)
    for b in range(pos.shape[0]):
        p = pos[b] if vals[b] == target else np.int64(-1)
        best = max(best, p)
    return best


@njit(cache=True)
def max_violation(yG, up, v):  # pragma: no cover - compiled
    """``v_b = -y_b G_b`` over I_up (``-inf`` elsewhere); returns its maximum (libsvm's ``Gmax``)."""
    m = -np.inf
    for b in range(yG.shape[0]):
        x = -yG[b] if up[b] else -np.inf
        v[b] = x
        m = vmax(m, x)
    return m


@njit(cache=True, error_model="numpy")  # q > 0: no division by zero to check
def min_objective(yG, low, row, qdi, QD, gmax, o):  # pragma: no cover - compiled
    """The second-order step of ``select_working_set`` for the chosen ``i`` (its ``row``).

    ``o_b`` is libsvm's ``obj_diff`` where ``b`` may be picked (``+inf`` elsewhere);
    returns the least. libsvm's ``grad_diff`` is ``Gmax + y_b G_b`` for either class of
    ``b``, and ``(QD_i + QD_b) - 2 f_ib`` equals both of its quadratic coefficients
    (``QD_i + QD_b -+ 2 y_i Q_ib``) exactly, since ``Q_ib = y_i y_b f_ib`` with
    ``f = float32(K)``. (One reduction per loop: LLVM does not vectorise two.)
    """
    om = np.inf
    for b in range(yG.shape[0]):
        gd = gmax + yG[b]
        q = (qdi + QD[b]) - 2.0 * np.float64(np.float32(row[b]))
        q = q if q > 0 else TAU
        x = -(gd * gd) / q if (low[b] & (gd > 0)) else np.inf
        o[b] = x
        om = vmin(om, x)
    return om


@njit(cache=True)
def max_low(yG, low):  # pragma: no cover - compiled
    """libsvm's ``Gmax2``: the largest ``y_b G_b`` over I_low."""
    m2 = -np.inf
    for b in range(yG.shape[0]):
        x = yG[b] if low[b] else -np.inf
        m2 = vmax(m2, x)
    return m2


@njit(cache=True)
def update_gradient(yG, up, ri, rj, ai, aj, v):  # pragma: no cover - compiled
    """libsvm's ``G_b += Q_ib dalpha_i + Q_jb dalpha_j`` kept as ``y_b G_b``, then the next
    :func:`max_violation` in the same pass (``up`` already updated).

    ``y_b (G_b + Q_ib da_i + Q_jb da_j) = y_b G_b + (f_ib (y_i da_i) + f_jb (y_j da_j))``
    exactly (``ai``, ``aj`` are ``y_i da_i``, ``y_j da_j``): a sign distributes over
    IEEE products and sums. Inactive variables are updated too: libsvm rebuilds their
    gradients (:func:`plugins.fast_estimators.smo._reconstruct`) before reading them.
    """
    m = -np.inf
    for b in range(yG.shape[0]):
        g = yG[b] + (np.float64(np.float32(ri[b])) * ai + np.float64(np.float32(rj[b])) * aj)
        yG[b] = g
        x = -g if up[b] else -np.inf
        v[b] = x
        m = vmax(m, x)
    return m


@njit(cache=True)
def add_gbar(Gbar, ys, krow, yi, c, sign):  # pragma: no cover - compiled
    """``G_bar_b += c Q_ib`` (``sign > 0``) or ``-= c Q_ib``, over every variable."""
    if sign > 0:
        for b in range(Gbar.shape[0]):
            Gbar[b] += c * q_entry(yi * ys[b], krow[b])
    else:
        for b in range(Gbar.shape[0]):
            Gbar[b] -= c * q_entry(yi * ys[b], krow[b])


@njit(cache=True, error_model="numpy")  # quad > 0: no division by zero to check
def two_variable_step(ai, aj, yi, yj, gi, gj, qd, qij, ci, cj):  # pragma: no cover - compiled
    """libsvm's update of ``alpha_i, alpha_j`` with its bound handling; ``qd = QD_i + QD_j``."""
    if yi != yj:
        quad = qd + 2.0 * qij
        if quad <= 0:
            quad = TAU
        delta = (-gi - gj) / quad
        diff = ai - aj
        ai += delta
        aj += delta
        if diff > 0:
            if aj < 0:
                aj = 0.0
                ai = diff
        elif ai < 0:
            ai = 0.0
            aj = -diff
        if diff > ci - cj:
            if ai > ci:
                ai = ci
                aj = ci - diff
        elif aj > cj:
            aj = cj
            ai = cj + diff
    else:
        quad = qd - 2.0 * qij
        if quad <= 0:
            quad = TAU
        delta = (gi - gj) / quad
        total = ai + aj
        ai -= delta
        aj += delta
        if total > ci:
            if ai > ci:
                ai = ci
                aj = total - ci
        elif aj < 0:
            aj = 0.0
            ai = total
        if total > cj:
            if aj > cj:
                aj = cj
                ai = total - cj
        elif ai < 0:
            ai = 0.0
            aj = total
    return ai, aj
