"""Statistics: confidence intervals and paired comparisons of two methods.

* :func:`wilson_interval` -- Wilson score interval of a proportion ``k/n``.
* :func:`clustered_wilson` -- the same over clustered trials (units: source images,
  patients), with a Korn-Graubard effective sample size.
* :func:`bootstrap_ci` -- seeded percentile bootstrap of any statistic.
* :func:`mcnemar` -- McNemar's test on paired correct/incorrect predictions; with
  ``units``, the clustered (sign-flip / Durkalski) form over independent units.
* :func:`corrected_ttest` -- Nadeau & Bengio's corrected resampled t-test.
* :func:`pairing_problem` / :func:`compare_methods` -- both tests for two result-record
  cells on the same folds, over independent units (docs/metrics.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

from bench.errors import UserError
from bench.units import UNIT_SAMPLE, get, record_sample_units

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


def all_distinct(units: Any) -> bool:
    """True when ``units`` is None or no two entries share a unit (each is its own unit)."""
    if units is None:
        return True
    units = np.asarray(units)
    return len(np.unique(units)) == units.size


def clustered_wilson(
    successes: Sequence[float], trials: Sequence[float], conf: float = 0.95
) -> tuple[float, float]:
    """Wilson interval of ``sum(successes) / sum(trials)`` over clustered trials.

    ``successes[u]`` / ``trials[u]`` are unit ``u``'s counts (units with no trial are
    ignored). With one trial per unit this *is* :func:`wilson_interval`. Otherwise
    the proportion's variance is the ratio estimator's over units,
    ``K/(K-1) * sum((y_u - p m_u)^2) / n^2``, the effective sample size is
    ``p(1-p)/var`` (at most n) scaled by ``(z / t_{K-1})^2`` (Korn & Graubard
    1998), and Wilson's formula runs on it. With no variation to estimate the
    design effect from (p = 0 or 1) the effective size is K, the number of units
    (every copy of a unit counted as one observation).
    """
    y = np.asarray(successes, dtype=float)
    m = np.asarray(trials, dtype=float)
    keep = m > 0
    y, m = y[keep], m[keep]
    n, k_units = float(m.sum()), int(m.size)
    if n <= 0:
        return (math.nan, math.nan)
    if np.all(m == 1):
        return wilson_interval(float(y.sum()), n, conf)
    p = float(y.sum()) / n
    if k_units < 2:
        return wilson_interval(p * k_units, k_units, conf)
    var = k_units / (k_units - 1) * float(np.sum((y - p * m) ** 2)) / (n * n)
    if p <= 0 or p >= 1:
        n_eff = float(k_units)
    elif var <= 0:
        n_eff = n
    else:
        n_eff = min(n, p * (1 - p) / var)
    z = float(sps.norm.ppf(0.5 + conf / 2))
    t = float(sps.t.ppf(0.5 + conf / 2, k_units - 1))
    n_eff *= (z / t) ** 2
    return wilson_interval(p * n_eff, n_eff, conf)


def mcnemar(
    correct_a: Sequence[bool], correct_b: Sequence[bool], units: Sequence[Any] | None = None
) -> tuple[float, float]:
    """McNemar's test: ``(statistic, p_value)`` (two-sided); see :func:`mcnemar_test`."""
    out = mcnemar_test(correct_a, correct_b, units)
    return (out["statistic"], out["p_value"])


def mcnemar_test(
    correct_a: Sequence[bool], correct_b: Sequence[bool], units: Sequence[Any] | None = None
) -> dict[str, Any]:
    """McNemar's test with its counts and method name.

    With ``b`` = cases only A gets right and ``c`` = cases only B gets right:
    exact binomial test when ``b + c < 25`` (statistic ``min(b, c)``), else the
    chi-squared statistic with continuity correction ``(|b - c| - 1)^2 / (b + c)``.
    No discordant pair gives ``(0.0, 1.0)``.

    ``units`` (one id per pair) make pairs of one unit (augmented copies, a
    patient's images) count together: ``d_u = b_u - c_u`` per unit, and under
    the null each ``d_u`` is as likely positive as negative. Fewer than 25 units
    with ``d_u != 0``: exact sign-flip test of ``|sum d_u|`` (statistic); else
    Durkalski et al. (2003) ``(sum d_u)^2 / sum d_u^2``, chi-squared with 1 df.
    With one pair per unit both reduce to the unclustered test above.
    """
    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape:
        raise ValueError("mcnemar: both prediction vectors must have the same length")
    only_a, only_b = a & ~b_, ~a & b_
    out: dict[str, Any] = {
        "only_a_correct": int(only_a.sum()),
        "only_b_correct": int(only_b.sum()),
    }
    if all_distinct(units):
        stat, p = _mcnemar_pairs(int(only_a.sum()), int(only_b.sum()))
        n = out["only_a_correct"] + out["only_b_correct"]
        out.update(
            statistic=stat, p_value=p, method="exact" if n < EXACT_MCNEMAR_BELOW else "chi2-cc"
        )
        out["discordant_units"] = n
        return out
    _, inverse = np.unique(np.asarray(units), return_inverse=True)
    d = np.bincount(inverse, weights=only_a.astype(float)) - np.bincount(
        inverse, weights=only_b.astype(float)
    )
    d = d[d != 0].astype(np.int64)
    out["discordant_units"] = int(d.size)
    if d.size == 0:
        out.update(statistic=0.0, p_value=1.0, method="clustered exact sign-flip")
    elif d.size < EXACT_MCNEMAR_BELOW:
        out.update(
            statistic=float(abs(d.sum())),
            p_value=_sign_flip_p(d),
            method="clustered exact sign-flip",
        )
    else:
        stat = float(d.sum()) ** 2 / float(np.sum(d.astype(float) ** 2))
        out.update(statistic=stat, p_value=float(sps.chi2.sf(stat, 1)), method="clustered chi2")
    return out


def _sign_flip_p(d: np.ndarray) -> float:
    """P(|sum e_u |d_u|| >= |sum d_u|) over independent fair signs e_u (exact, by convolution)."""
    mags = np.abs(d)
    total = int(mags.sum())
    dist = np.zeros(2 * total + 1)
    dist[total] = 1.0
    for v in mags:
        v = int(v)
        dist = (np.roll(dist, v) + np.roll(dist, -v)) / 2
    observed = abs(int(d.sum()))
    sums = np.abs(np.arange(-total, total + 1))
    return float(min(1.0, dist[sums >= observed].sum()))


def _mcnemar_pairs(b: int, c: int) -> tuple[float, float]:
    """McNemar on independent pairs: ``b`` only-A-correct, ``c`` only-B-correct."""
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


def _by_sample(cell: Any) -> dict[int, tuple[int, int, int]]:
    """{sample index: (fold, y_true, y_pred)} of a result cell (dict or typed record)."""
    out: dict[int, tuple[int, int, int]] = {}
    for f in get(cell, "folds", []):
        fold = int(get(f, "fold", 0))
        test_index, y_true, y_pred = (get(f, k, []) for k in ("test_index", "y_true", "y_pred"))
        for i, t, p in zip(test_index, y_true, y_pred, strict=True):
            out[int(i)] = (fold, int(t), int(p))
    return out


def _partition(cell: Any) -> set[frozenset[int]]:
    return {frozenset(int(i) for i in get(f, "test_index", [])) for f in get(cell, "folds", [])}


def pairing_problem(cell_a: Any, cell_b: Any) -> str | None:
    """Why two cells cannot be compared pair by pair, or None when they can.

    A paired test needs the same samples (``samples.source``: same images, same
    augmentation), the same test folds (the same partition of samples into test
    sets, in any order) and the same labels.
    """
    if not get(cell_a, "folds") or not get(cell_b, "folds"):
        return "one of them has no stored fold predictions"
    src_a = list(get(get(cell_a, "samples", {}), "source", []))
    src_b = list(get(get(cell_b, "samples", {}), "source", []))
    if src_a and src_b and src_a != src_b:
        return "their samples differ (other images or augmentation)"
    pa, pb = _by_sample(cell_a), _by_sample(cell_b)
    if pa.keys() != pb.keys() or _partition(cell_a) != _partition(cell_b):
        return "their folds differ"
    if any(pa[i][1] != pb[i][1] for i in pa):
        return "their labels differ"
    return None


def compare_methods(
    cell_a: Any, cell_b: Any, dataset: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Paired comparison of two result-record cells evaluated on the same folds.

    McNemar on the paired test predictions and the Nadeau-Bengio corrected
    t-test on per-fold accuracy, both over independent units: source images, or
    patients when ``dataset`` (the record's ``dataset`` block) stores patient ids
    (:mod:`bench.units`). Cells are dicts or ``bench.records.CellRecord``.
    Raises :class:`UserError` naming the reason when the cells cannot be paired
    (:func:`pairing_problem`).
    """
    problem = pairing_problem(cell_a, cell_b)
    if problem is not None:
        raise UserError(
            f"cannot compare {get(cell_a, 'id', 'cell A')!r} with {get(cell_b, 'id', 'cell B')!r}: "
            f"{problem} (run both in one suite, with the same seed)"
        )
    pa, pb = _by_sample(cell_a), _by_sample(cell_b)
    index = sorted(pa)
    correct_a = np.array([pa[i][1] == pa[i][2] for i in index])
    correct_b = np.array([pb[i][1] == pb[i][2] for i in index])
    per_sample, unit, note = record_sample_units(cell_a, dataset)
    if per_sample is None:
        per_sample, unit = np.arange(max(index) + 1), UNIT_SAMPLE
    units = per_sample[np.asarray(index, dtype=np.int64)]
    test = mcnemar_test(correct_a, correct_b, units)
    fold_of = np.array([pa[i][0] for i in index])
    folds = sorted(set(fold_of.tolist()))
    acc_a = [float(correct_a[fold_of == f].mean()) for f in folds]
    acc_b = [float(correct_b[fold_of == f].mean()) for f in folds]
    n_total = len(set(per_sample.tolist()))
    n_test = float(np.mean([len(set(units[fold_of == f].tolist())) for f in folds]))
    t, p_t = corrected_ttest(acc_a, acc_b, n_total - n_test, n_test)
    return {
        "accuracy_a": float(correct_a.mean()),
        "accuracy_b": float(correct_b.mean()),
        "unit": unit,
        "n_units": int(len(set(units.tolist()))),
        "n_predictions": len(index),
        "unit_note": note,
        "mcnemar": {
            "statistic": test["statistic"],
            "p_value": test["p_value"],
            "only_a_correct": test["only_a_correct"],
            "only_b_correct": test["only_b_correct"],
            "discordant_units": test["discordant_units"],
            "method": test["method"],
        },
        "corrected_ttest": {
            "t": t,
            "p_value": p_t,
            "mean_difference": float(np.mean(np.subtract(acc_a, acc_b))),
            "n_folds": len(folds),
            "n_train_units": n_total - n_test,
            "n_test_units": n_test,
        },
    }
