"""Statistics: confidence intervals and paired comparisons of two methods.

* :func:`wilson_interval` -- Wilson score interval of a proportion ``k/n``.
* :func:`bootstrap_ci` -- seeded percentile bootstrap of any statistic.
* :func:`mcnemar` -- McNemar's test on paired correct/incorrect predictions.
* :func:`corrected_ttest` -- Nadeau & Bengio's corrected resampled t-test.
* :func:`compare_methods` -- both tests for two result-record cells on the same folds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

from bench.errors import UserError

EXACT_MCNEMAR_BELOW = 25


def wilson_interval(k: float, n: float, conf: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials; ``(nan, nan)`` when n == 0."""
    if n <= 0:
        return (math.nan, math.nan)
    z = float(sps.norm.ppf(0.5 + conf / 2))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_ci(
    fn: Callable[..., float],
    arrays: Sequence[np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
    conf: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``fn(*arrays)``, resampling rows of all arrays jointly.

    Replicates where ``fn`` is nan are dropped; ``(nan, nan)`` when none is finite.
    """
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    if n == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        values[b] = fn(*(a[idx] for a in arrays))
    return percentile_interval(values, conf)


def percentile_interval(values: np.ndarray, conf: float = 0.95) -> tuple[float, float]:
    """The central ``conf`` range of the finite ``values``."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (math.nan, math.nan)
    alpha = (1 - conf) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return (float(lo), float(hi))


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> tuple[float, float]:
    """McNemar's test: ``(statistic, p_value)`` (two-sided).

    With ``b`` = cases only A gets right and ``c`` = cases only B gets right:
    exact binomial test when ``b + c < 25`` (statistic ``min(b, c)``), else the
    chi-squared statistic with continuity correction ``(|b - c| - 1)^2 / (b + c)``.
    No discordant pair gives ``(0.0, 1.0)``.
    """
    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape:
        raise ValueError("mcnemar: both prediction vectors must have the same length")
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    n = b + c
    if n == 0:
        return (0.0, 1.0)
    if n < EXACT_MCNEMAR_BELOW:
        k = min(b, c)
        return (float(k), float(min(1.0, 2 * sps.binom.cdf(k, n, 0.5))))
    stat = (abs(b - c) - 1) ** 2 / n
    return (float(stat), float(sps.chi2.sf(stat, 1)))


def corrected_ttest(
    scores_a: Sequence[float], scores_b: Sequence[float], n_train: float, n_test: float
) -> tuple[float, float]:
    """Nadeau & Bengio (2003) corrected resampled t-test: ``(t, p_value)`` (two-sided).

    ``t = mean(d) / sqrt((1/J + n_test/n_train) * var(d))`` over the ``J``
    per-fold differences ``d = a - b`` (sample variance), ``J - 1`` degrees of freedom.
    """
    d = np.asarray(scores_a, dtype=float) - np.asarray(scores_b, dtype=float)
    j = d.size
    if j < 2:
        return (math.nan, math.nan)
    mean = float(d.mean())
    var = float(d.var(ddof=1))
    if var == 0:
        return (0.0, 1.0) if mean == 0 else (math.copysign(math.inf, mean), 0.0)
    t = mean / math.sqrt((1 / j + n_test / n_train) * var)
    return (float(t), float(2 * sps.t.sf(abs(t), j - 1)))


def _pooled(cell: Mapping[str, Any]) -> dict[int, tuple[int, int, int]]:
    """{sample index: (fold, y_true, y_pred)} of a result cell."""
    out: dict[int, tuple[int, int, int]] = {}
    for f in cell["folds"]:
        for i, t, p in zip(f["test_index"], f["y_true"], f["y_pred"], strict=True):
            out[int(i)] = (int(f["fold"]), int(t), int(p))
    return out


def compare_methods(cell_a: Mapping[str, Any], cell_b: Mapping[str, Any]) -> dict[str, Any]:
    """Paired comparison of two result-record cells evaluated on the same folds.

    McNemar on the pooled test predictions and the Nadeau-Bengio corrected
    t-test on per-fold accuracy. Raises :class:`UserError` when the cells'
    folds differ.
    """
    pa, pb = _pooled(cell_a), _pooled(cell_b)
    if pa.keys() != pb.keys() or any(pa[i][:2] != pb[i][:2] for i in pa):
        raise UserError(
            f"cannot compare {cell_a.get('id', 'cell A')!r} with {cell_b.get('id', 'cell B')!r}: "
            "their folds or labels differ (run both in one suite, with the same seed)"
        )
    index = sorted(pa)
    correct_a = np.array([pa[i][1] == pa[i][2] for i in index])
    correct_b = np.array([pb[i][1] == pb[i][2] for i in index])
    stat, p = mcnemar(correct_a, correct_b)
    discordant_a = int(np.sum(correct_a & ~correct_b))
    discordant_b = int(np.sum(~correct_a & correct_b))
    folds = sorted({pa[i][0] for i in index})
    fold_of = np.array([pa[i][0] for i in index])
    acc_a = [float(correct_a[fold_of == f].mean()) for f in folds]
    acc_b = [float(correct_b[fold_of == f].mean()) for f in folds]
    n_total = len(cell_a.get("samples", {}).get("source", [])) or len(index)
    n_test = float(np.mean([np.sum(fold_of == f) for f in folds]))
    t, p_t = corrected_ttest(acc_a, acc_b, n_total - n_test, n_test)
    return {
        "accuracy_a": float(correct_a.mean()),
        "accuracy_b": float(correct_b.mean()),
        "mcnemar": {
            "statistic": stat,
            "p_value": p,
            "only_a_correct": discordant_a,
            "only_b_correct": discordant_b,
            "method": "exact" if discordant_a + discordant_b < EXACT_MCNEMAR_BELOW else "chi2-cc",
        },
        "corrected_ttest": {
            "t": t,
            "p_value": p_t,
            "mean_difference": float(np.mean(np.subtract(acc_a, acc_b))),
            "n_folds": len(folds),
        },
    }
