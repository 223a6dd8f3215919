"""Intervals and paired tests against hand-computed reference values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.errors import UserError
from bench.stats import bootstrap_ci, compare_methods, corrected_ttest, mcnemar, wilson_interval


def test_wilson_known_values():
    # Newcombe (1998), Table I: 81/263 -> 0.2553 to 0.3662; 15/148 -> 0.0624 to 0.1605.
    lo, hi = wilson_interval(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    lo, hi = wilson_interval(15, 148)
    assert (round(lo, 4), round(hi, 4)) == (0.0624, 0.1605)
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_bootstrap_ci_is_seeded_and_covers_mean():
    x = np.random.default_rng(0).normal(5, 1, 200)
    a = bootstrap_ci(np.mean, [x], n_boot=500, seed=1)
    assert a == bootstrap_ci(np.mean, [x], n_boot=500, seed=1)
    assert a != bootstrap_ci(np.mean, [x], n_boot=500, seed=2)
    assert a[0] < x.mean() < a[1]
    half = 1.96 * x.std(ddof=1) / math.sqrt(200)
    assert a[1] - a[0] == pytest.approx(2 * half, rel=0.2)


def _pairs(b: int, c: int, both: int = 30, neither: int = 5):
    a = [True] * b + [False] * c + [True] * both + [False] * neither
    bb = [False] * b + [True] * c + [True] * both + [False] * neither
    return a, bb


def test_mcnemar_exact_below_25_discordant():
    stat, p = mcnemar(*_pairs(3, 10))
    assert stat == 3
    assert p == pytest.approx(2 * sps.binom.cdf(3, 13, 0.5))
    assert mcnemar(*_pairs(0, 0)) == (0.0, 1.0)
    assert mcnemar(*_pairs(5, 5))[1] == 1.0


def test_mcnemar_chi2_with_continuity_correction():
    stat, p = mcnemar(*_pairs(30, 12))
    assert stat == pytest.approx((abs(30 - 12) - 1) ** 2 / 42)
    assert p == pytest.approx(sps.chi2.sf(stat, 1))


def test_corrected_ttest_hand_formula():
    a = np.array([0.90, 0.92, 0.88, 0.95, 0.91, 0.89, 0.93, 0.90, 0.94, 0.92])
    b = np.array([0.88, 0.90, 0.89, 0.91, 0.90, 0.86, 0.90, 0.89, 0.91, 0.90])
    d = a - b
    t_expected = d.mean() / math.sqrt((1 / 10 + 1 / 9) * d.var(ddof=1))
    t, p = corrected_ttest(a, b, n_train=900, n_test=100)
    assert t == pytest.approx(t_expected)
    assert p == pytest.approx(2 * sps.t.sf(abs(t_expected), 9))
    # The correction makes it more conservative than the plain paired t-test.
    assert p > sps.ttest_rel(a, b).pvalue
    assert corrected_ttest(a, a, 900, 100) == (0.0, 1.0)


def _cell(preds_by_fold, y_by_fold, idx_by_fold):
    return {
        "id": "x",
        "folds": [
            {"fold": i, "test_index": ix, "y_true": yt, "y_pred": yp}
            for i, (ix, yt, yp) in enumerate(
                zip(idx_by_fold, y_by_fold, preds_by_fold, strict=True)
            )
        ],
    }


def test_compare_methods_on_cells():
    rng = np.random.default_rng(0)
    n, k = 300, 5
    y = rng.integers(0, 2, n)
    pa = np.where(rng.random(n) < 0.9, y, 1 - y)
    pb = np.where(rng.random(n) < 0.75, y, 1 - y)
    parts = np.array_split(rng.permutation(n), k)
    cell_a = _cell(
        [pa[p].tolist() for p in parts], [y[p].tolist() for p in parts], [p.tolist() for p in parts]
    )
    cell_b = _cell(
        [pb[p].tolist() for p in parts], [y[p].tolist() for p in parts], [p.tolist() for p in parts]
    )
    out = compare_methods(cell_a, cell_b)
    assert out["accuracy_a"] == pytest.approx(np.mean(pa == y))
    assert (out["mcnemar"]["statistic"], out["mcnemar"]["p_value"]) == mcnemar(pa == y, pb == y)
    acc_a = [np.mean(pa[p] == y[p]) for p in parts]
    acc_b = [np.mean(pb[p] == y[p]) for p in parts]
    t, pt = corrected_ttest(acc_a, acc_b, n - n / k, n / k)
    assert out["corrected_ttest"]["t"] == pytest.approx(t)
    assert out["corrected_ttest"]["p_value"] == pytest.approx(pt)
    assert out["mcnemar"]["p_value"] < 0.01


def test_compare_methods_refuses_different_folds():
    a = _cell([[0, 1]], [[0, 1]], [[0, 1]])
    b = _cell([[0, 1]], [[0, 1]], [[2, 3]])
    with pytest.raises(UserError, match="folds differ"):
        compare_methods(a, b)
