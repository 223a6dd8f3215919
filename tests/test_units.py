"""Intervals and paired tests over independent units (source images, patients)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from bench.data.imageset import ImageSet, Samples
from bench.metrics import _binary_auc, summarize, weighted_auc
from bench.record_stats import cell_metrics_over_units, record_unit_text
from bench.stats import (
    clustered_wilson,
    compare_methods,
    mcnemar,
    mcnemar_test,
    pairing_problem,
    wilson_interval,
)
from bench.units import (
    cell_units,
    dataset_unit_info,
    pooled_units,
    sample_units,
    unit_text,
)
from tests.fixtures.records import make_cell, make_record

RESULTS = Path(__file__).resolve().parents[1] / "results"
X5_GROUPED = RESULTS / "20261126T070522Z-study-source-check-x5-grouped-443b0f.json"


def _folds(n: int = 200, k: int = 4, seed: int = 0, copies: int = 1):
    """Folds whose predictions are ``copies`` identical copies of each source's."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < 0.8, y, 1 - y)
    score = np.round(np.where(pred == 1, 0.5, 0.0) + rng.random(n) / 2, 3)
    parts = np.array_split(rng.permutation(n), k)
    folds, units = [], []
    for i, part in enumerate(parts):
        idx = np.repeat(part, copies)
        folds.append({"fold": i, "y_true": y[idx], "y_pred": pred[idx], "score": score[idx]})
        units.append(idx)
    return folds, np.concatenate(units)


def test_singleton_units_change_nothing():
    folds, units = _folds()
    plain = summarize(folds, n_classes=2, positive_index=1, seed=2, n_boot=300)
    per_unit = summarize(
        folds, n_classes=2, positive_index=1, seed=2, n_boot=300, units=units, unit="source image"
    )
    assert per_unit["ci"] == plain["ci"] and per_unit["pooled"] == plain["pooled"]
    assert (per_unit["unit"], per_unit["n_units"]) == ("source image", 200)
    assert (plain["unit"], plain["n_units"], plain["n_predictions"]) == ("sample", 200, 200)
    with pytest.raises(ValueError, match="199 units for 200"):
        summarize(folds, n_classes=2, positive_index=1, units=units[:-1])


def test_copies_widen_intervals_to_those_of_the_sources():
    """x5 identical copies carry the evidence of the originals, not five times more."""
    orig, _ = _folds()
    x5, units = _folds(copies=5)
    base = summarize(orig, n_classes=2, positive_index=1, seed=0, n_boot=400)
    naive = summarize(x5, n_classes=2, positive_index=1, seed=0, n_boot=400)
    clustered = summarize(
        x5, n_classes=2, positive_index=1, seed=0, n_boot=400, units=units, unit="source image"
    )
    assert clustered["pooled"] == naive["pooled"] == base["pooled"]
    assert (clustered["n_units"], clustered["n_predictions"]) == (200, 1000)

    def width(s, key):
        lo, hi = s["ci"][key]
        return hi - lo

    for key in ("accuracy", "precision", "recall", "specificity"):
        # naive is ~sqrt(5) too narrow; over units it matches the originals' Wilson
        assert width(naive, key) < width(base, key) / 2, key
        assert width(base, key) <= width(clustered, key) <= 1.05 * width(base, key), key
    for key in ("mcc", "f1", "roc_auc"):  # cluster bootstrap ~ sample bootstrap of originals
        assert width(naive, key) < 0.6 * width(base, key), key
        assert 0.75 * width(base, key) < width(clustered, key) < 1.3 * width(base, key), key


def test_clustered_wilson_covers_at_the_nominal_rate():
    """Correlated copies: the naive interval misses often, the clustered one about 5%."""
    rng = np.random.default_rng(0)
    miss_naive = miss_clustered = 0
    trials = 400
    for _ in range(trials):
        p_unit = rng.beta(2, 0.5, 60)  # each unit's own accuracy (true mean 0.8)
        y = rng.binomial(5, p_unit)
        m = np.full(60, 5)
        lo, hi = wilson_interval(y.sum(), m.sum())
        miss_naive += not lo <= 0.8 <= hi
        lo, hi = clustered_wilson(y, m)
        miss_clustered += not lo <= 0.8 <= hi
    assert miss_naive / trials > 0.1
    assert 0.02 < miss_clustered / trials < 0.085


def test_clustered_wilson_edge_cases():
    assert clustered_wilson([1, 0], [1, 1]) != clustered_wilson([5, 0], [5, 5])
    assert clustered_wilson([1, 0, 1], [1, 1, 1]) == wilson_interval(2, 3)
    lo, hi = clustered_wilson([5] * 20, [5] * 20)  # all correct: n_eff = units, not copies
    assert hi == 1.0 and lo < wilson_interval(100, 100)[0]
    assert np.isnan(clustered_wilson([0], [0])).all()


def test_weighted_auc_is_auc_of_replicated_samples():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 80) == 1
    s = np.round(rng.random(80), 1)  # ties
    w = rng.integers(0, 4, (3, 80))
    got = weighted_auc(y, s, w)
    for b in range(3):
        idx = np.repeat(np.arange(80), w[b])
        assert got[b] == pytest.approx(_binary_auc(y[idx], s[idx])[0])


def test_clustered_mcnemar_counts_units_once():
    rng = np.random.default_rng(1)
    a = rng.random(40) < 0.8
    b = rng.random(40) < 0.6
    units = np.repeat(np.arange(40), 5)
    assert mcnemar(a, b, units=np.arange(40)) == mcnemar(a, b)
    # five identical copies: same p as the originals (exact sign-flip = exact binomial)
    stat, p = mcnemar(np.repeat(a, 5), np.repeat(b, 5), units=units)
    assert p == pytest.approx(mcnemar(a, b)[1])
    assert mcnemar(np.repeat(a, 5), np.repeat(b, 5))[1] < p  # the naive test overstates
    # >= 25 discordant units: Durkalski's chi-squared on per-unit differences
    a2, b2 = rng.random(600) < 0.7, rng.random(600) < 0.5
    u2 = np.repeat(np.arange(120), 5)
    d = np.bincount(u2, a2 & ~b2) - np.bincount(u2, ~a2 & b2)
    d = d[d != 0]
    out = mcnemar_test(a2, b2, u2)
    assert out["method"] == "clustered chi2" and out["discordant_units"] == d.size
    assert out["statistic"] == pytest.approx(d.sum() ** 2 / np.sum(d**2))
    assert out["p_value"] == pytest.approx(sps.chi2.sf(out["statistic"], 1))


def _augmented_pair(copies: int = 5):
    a = make_cell(classifier="svm-cubic", accuracy=0.9, copies=copies, n_sources=80)
    b = make_cell(
        classifier="tree", label="Decision tree", accuracy=0.7, copies=copies, n_sources=80
    )
    return a, b, make_record([a, b])


def test_compare_methods_over_source_images():
    a, b, record = _augmented_pair()
    out = compare_methods(a, b, record["dataset"])
    assert (out["unit"], out["n_units"], out["n_predictions"]) == ("source image", 80, 400)
    assert out["mcnemar"]["method"].startswith("clustered")
    assert out["corrected_ttest"]["n_test_units"] == pytest.approx(16)
    # the same folds in another order still pair
    b_shuffled = {**b, "folds": list(reversed(b["folds"]))}
    assert pairing_problem(a, b_shuffled) is None
    assert compare_methods(a, b_shuffled)["mcnemar"] == out["mcnemar"]
    other = make_cell(classifier="knn", copies=1, n_sources=80)
    assert "samples differ" in pairing_problem(a, other)


def test_units_from_patients_in_the_dataset_block():
    a, b, record = _augmented_pair(copies=1)
    patients = [f"p{i // 4}" for i in range(80)]  # 20 patients, 4 images each
    dataset = {**record["dataset"], "unit": "patient", "groups": patients}
    units, unit = cell_units(a, dataset)
    assert unit == "patient" and len(set(units)) == 20
    m = cell_metrics_over_units(a, dataset)
    assert (m["unit"], m["n_units"], m["n_predictions"]) == ("patient", 20, 80)
    assert m["pooled"]["accuracy"] == pytest.approx(a["metrics"]["pooled"]["accuracy"])
    assert compare_methods(a, b, dataset)["n_units"] == 20
    assert record_unit_text({**record, "dataset": dataset}).startswith("80 images, 20 units")


def test_imageset_units_and_dataset_info(tmp_path):
    paths = tuple(tmp_path / f"{i}.png" for i in range(6))
    labels = np.array([0, 0, 0, 1, 1, 1])
    by_patient = ImageSet(
        "x", paths, labels, ("a", "b"), ("p1", "p1", "p2", "p3", "p3", "p4"),
        root=tmp_path, meta={"groups": "patient_id"},
    )  # fmt: skip
    info = dataset_unit_info(by_patient)
    assert info == {"unit": "patient", "groups": ["p1", "p1", "p2", "p3", "p3", "p4"]}
    ids, unit = sample_units(Samples.originals(by_patient))
    assert unit == "patient" and list(ids) == list(info["groups"])
    by_image = ImageSet("x", paths, labels, ("a", "b"), tuple(p.name for p in paths))
    assert dataset_unit_info(by_image) == {"unit": "source image", "groups": None}
    ids, unit = sample_units(Samples.originals(by_image))
    assert unit == "source image" and list(pooled_units([{"test_index": [5, 0]}], ids)) == [5, 0]


def test_committed_x5_record_recomputed_over_source_images():
    record = json.loads(X5_GROUPED.read_text(encoding="utf-8"))
    cell = record["cells"][0]  # efficientnet_lite0 + dt, 98.2%
    m = cell_metrics_over_units(cell, record["dataset"], n_boot=200)
    assert (m["unit"], m["n_units"], m["n_predictions"]) == ("source image", 696, 3480)
    assert m["pooled"] == pytest.approx(cell["metrics"]["pooled"], nan_ok=True)
    lo, hi = m["ci"]["accuracy"]
    old_lo, old_hi = cell["metrics"]["ci"]["accuracy"]
    assert hi - lo > 1.2 * (old_hi - old_lo)
    assert unit_text(3480, 696, "source image") == "3480 predictions of 696 source images"
