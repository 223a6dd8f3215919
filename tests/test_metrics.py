"""Metrics against scikit-learn's own functions on random predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from bench.crossval import FoldPrediction
from bench.metrics import compute_metrics, confusion_matrix, summarize


def _random_binary(seed: int, n: int = 200):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = y * 0.8 + rng.normal(size=n)
    pred = (score + rng.normal(size=n) * 0.5 > 0.4).astype(int)
    return y, pred, score


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("positive", [0, 1])
def test_binary_matches_sklearn(seed, positive):
    y, pred, score = _random_binary(seed)
    s = score if positive == 1 else -score
    m = compute_metrics(y, pred, s, n_classes=2, positive_index=positive)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, pos_label=positive))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred, pos_label=positive))
    assert m["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=1 - positive))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, pos_label=positive))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y == positive, s))


def test_paper_formulas_on_known_counts():
    # TP=3, FN=1, FP=2, TN=4 with positive class 1.
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0])
    m = compute_metrics(y, p, n_classes=2, positive_index=1)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(4 / 6)
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert math.isnan(m["roc_auc"])  # no scores


def test_zero_division_is_nan():
    y = np.array([0, 0, 1, 1])
    p = np.array([0, 0, 0, 0])  # no positive prediction
    m = compute_metrics(y, p, np.zeros(4), n_classes=2, positive_index=1)
    assert math.isnan(m["precision"]) and math.isnan(m["mcc"])
    assert m["recall"] == 0 and m["f1"] == 0 and m["roc_auc"] == 0.5
    nothing = compute_metrics([0, 0], [0, 0], n_classes=2, positive_index=1)
    assert math.isnan(nothing["f1"]) and math.isnan(nothing["recall"])
    one_class = compute_metrics([1, 1], [1, 0], [0.9, 0.1], n_classes=2, positive_index=1)
    assert math.isnan(one_class["specificity"]) and math.isnan(one_class["roc_auc"])


@pytest.mark.parametrize("seed", range(4))
def test_multiclass_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    k, n = 4, 300
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = np.where(rng.random(n) < 0.2, rng.integers(0, k, n), proba.argmax(axis=1))
    if seed == 0:
        pred[pred == 3] = 2  # class 3 never predicted: its precision is undefined
    m = compute_metrics(y, pred, proba, n_classes=k, positive_index=None)
    nan = np.nan
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    for avg in ("macro", "weighted"):
        for name, fn in (
            ("precision", skm.precision_score),
            ("recall", skm.recall_score),
            ("f1", skm.f1_score),
        ):
            expected = fn(y, pred, average=avg, zero_division=nan)
            assert m[f"{name}_{avg}"] == pytest.approx(expected), (name, avg)
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert np.array_equal(confusion_matrix(y, pred, k), skm.confusion_matrix(y, pred))


def _folds(seed: int = 0, k: int = 5):
    y, pred, score = _random_binary(seed, 250)
    parts = np.array_split(np.arange(250), k)
    return [
        FoldPrediction(fold=i, test_index=p, y_true=y[p], y_pred=pred[p], score=score[p], fit_s=0)
        for i, p in enumerate(parts)
    ], (y, pred, score)


def test_summarize_pooled_mean_std_ci():
    folds, (y, pred, score) = _folds()
    s = summarize(folds, n_classes=2, positive_index=1, seed=0, n_boot=300)
    assert set(s) == {
        "pooled",
        "mean",
        "std",
        "ci",
        "unit",
        "n_units",
        "n_predictions",
        "per_class",
        "confusion",
    }
    assert (s["unit"], s["n_units"], s["n_predictions"]) == ("sample", 250, 250)
    assert s["pooled"]["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    accs = [skm.accuracy_score(f.y_true, f.y_pred) for f in folds]
    assert s["mean"]["accuracy"] == pytest.approx(np.mean(accs))
    assert s["std"]["accuracy"] == pytest.approx(np.std(accs, ddof=1))
    assert s["confusion"] == skm.confusion_matrix(y, pred).tolist()
    for key, (lo, hi) in s["ci"].items():
        assert lo <= s["pooled"][key] <= hi, key
    from bench.stats import wilson_interval

    correct = int(np.sum(y == pred))
    assert s["ci"]["accuracy"] == list(wilson_interval(correct, len(y)))
    assert s["per_class"]["1"]["recall"] == pytest.approx(s["pooled"]["recall"])
    again = summarize(folds, n_classes=2, positive_index=1, seed=0, n_boot=300)
    assert again["ci"] == s["ci"]  # seeded bootstrap
    other = summarize(folds, n_classes=2, positive_index=1, seed=1, n_boot=300)
    assert other["ci"]["mcc"] != s["ci"]["mcc"]


def test_summarize_accepts_record_dicts_and_multiclass():
    rng = np.random.default_rng(3)
    folds = []
    for _ in range(3):
        y = rng.integers(0, 3, 40)
        p = np.where(rng.random(40) < 0.7, y, rng.integers(0, 3, 40))
        folds.append({"y_true": y.tolist(), "y_pred": p.tolist(), "score": None})
    s = summarize(folds, n_classes=3, positive_index=None, n_boot=200)
    assert np.array(s["confusion"]).shape == (3, 3)
    assert set(s["per_class"]) == {"0", "1", "2"}
    assert "f1_macro" in s["pooled"] and math.isnan(s["pooled"]["roc_auc"])
    lo, hi = s["ci"]["f1_macro"]
    assert lo < s["pooled"]["f1_macro"] < hi
