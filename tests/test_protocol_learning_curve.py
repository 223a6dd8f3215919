"""The ``learning-curve`` protocol: nested, stratified, grouped subsamples; same test folds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.crossval import cross_validate
from bench.data.splits import make_folds
from bench.errors import UserError
from bench.protocols.learning_curve import curve_plan, nested_subsets, summarise_curve
from bench.registry import get_registry
from bench.runner import run_suite
from bench.suite import load_suite
from tests.test_protocol_tuned import fc7_like

FRACTIONS = [0.05, 0.1, 0.25, 0.5, 1.0]


def test_subsamples_are_nested_stratified_grouped_and_seeded():
    X, y, g = fc7_like(n=600, copies=3)
    train = np.arange(0, 600, 1)[::1][:480]
    subs = nested_subsets(train, y, g, FRACTIONS, (0, 0, 0))
    for small, large in zip(subs, subs[1:]):
        assert set(small.rows) < set(large.rows)  # nested
    assert np.array_equal(subs[-1].rows, np.sort(train))  # 100% = the whole fold
    n_groups = {c: len(set(g[train][y[train] == c])) for c in (0, 1)}
    for s in subs:
        kept = set(g[s.rows])
        # whole groups only: every copy of a kept group is kept
        assert all(
            set(np.flatnonzero(np.isin(g[train], [k]))) <= set(np.searchsorted(train, s.rows))
            for k in list(kept)[:5]
        )
        assert s.n_units == len(kept)
        for c in (0, 1):  # stratified: ceil(f * n_c) groups of each class
            assert s.units_per_class[c] == max(1, math.ceil(s.fraction * n_groups[c] - 1e-9))
    again = nested_subsets(train, y, g, FRACTIONS, (0, 0, 0))
    other = nested_subsets(train, y, g, FRACTIONS, (0, 0, 1))
    assert all(np.array_equal(a.rows, b.rows) for a, b in zip(subs, again))
    assert not np.array_equal(subs[1].rows, other[1].rows)


def test_curve_keeps_test_folds_and_fits_full_size_once():
    X, y, g = fc7_like(n=300)
    splits = make_folds(y, g, folds=3, seed=0)
    plan = curve_plan(splits, y, g, FRACTIONS, repeats=2, seed=0)
    for (i, _r, _j), k in plan.where.items():
        assert np.array_equal(plan.fits[k][1], splits[i][1])  # same test fold at every point
        assert not set(g[plan.fits[k][0]]) & set(g[splits[i][1]])
    # 100% is the same fit for every repeat: 3 folds x (2 repeats x 4 fractions + 1)
    assert len(plan.fits) == 3 * (2 * 4 + 1)


def test_more_training_units_score_higher_on_a_learnable_signal():
    X, y, g = fc7_like(n=600, d=64, copies=3, seed=1)
    splits = make_folds(y, g, folds=4, seed=0)
    plan = curve_plan(splits, y, g, [0.05, 0.25, 1.0], repeats=3, seed=0)
    preds = cross_validate(X, y, plan.fits, {"svm-linear": {}}, positive_index=1)["svm-linear"]
    section = summarise_curve(plan, preds, g, n_classes=2, positive_index=1, seed=0, n_boot=200)
    pts = section["points"]
    assert [p["fraction"] for p in pts] == [0.05, 0.25, 1.0]
    assert pts[0]["n_units"] < pts[1]["n_units"] < pts[2]["n_units"]
    assert pts[2]["score"] > pts[0]["score"]
    for p in pts:
        lo, hi = p["ci"]
        assert lo <= p["score"] <= hi
        assert len(p["y_pred"]) == 3 and len(p["repeat_scores"]) == 3
    assert pts[2]["repeat_std"] == 0.0  # 100% is one fit for every repeat


SUITE = """
[suite]
name = "lc-tiny"
[data]
dataset = "synthetic"
options = { n_per_class = 12, size = 64 }
[[protocol]]
kind = "learning-curve"
backbones = ["efficientnet_lite0"]
classifiers = ["svm-linear", "knn1"]
folds = 3
fractions = [0.5, 0.25, 1.0]
repeats = 2
"""


@pytest.mark.parametrize(
    "extra, message",
    [
        ("fractions = [0.0, 1.0]", r"fractions\[0\]: 0.0 is out of range"),
        ("fractions = [0.5, 0.5]", "fractions: repeated values"),
        ("repeats = 0", "repeats: 0 is out of range"),
        ('metric = "acuracy"', "did you mean 'accuracy'"),
        ("settings = { epochs = 2 }", "settings are fine-tuning settings; set finetune = true"),
        ("holdout = 0.2", "learning curve uses folds"),
    ],
)
def test_bad_settings_exit_before_any_image(tmp_path, extra, message):
    f = tmp_path / "s.toml"
    text = SUITE.replace("repeats = 2\n", "") if extra.startswith("repeats") else SUITE
    text = (
        text.replace("fractions = [0.5, 0.25, 1.0]\n", "")
        if extra.startswith("fractions")
        else text
    )
    f.write_text(text + extra + "\n")
    with pytest.raises(UserError, match=message):
        load_suite(str(f), registry=get_registry())


@pytest.mark.slow
def test_learning_curve_runs_resumes_and_draws(tmp_path):
    from bench.protocol_reports import protocol_figures, protocol_tables

    f = tmp_path / "s.toml"
    f.write_text(SUITE)
    suite = load_suite(str(f), registry=get_registry())
    assert suite.protocols[0]["fractions"] == [0.25, 0.5, 1.0]
    record, _ = run_suite(suite, results_dir=tmp_path / "r", progress=False)
    cell = record["cells"][0]
    lc = cell["learning_curve"]
    assert [p["fraction"] for p in lc["points"]] == [0.25, 0.5, 1.0]
    assert lc["points"][-1]["n_units"] == 16  # 2/3 of 24 source images
    assert sorted(i for fold in cell["folds"] for i in fold["test_index"]) == list(range(24))
    # predictions per repeat are aligned with the cell's folds (the index is stored once)
    full = [p for fold in cell["folds"] for p in fold["y_pred"]]
    assert all("test_index" not in p for p in lc["points"])
    assert lc["points"][-1]["y_pred"][0] == full
    tables = protocol_tables([record])
    assert tables[0].key == "learning-curve" and len(tables[0].rows) == 2 * 3
    paths = protocol_figures([record], tmp_path / "fig")
    assert len(paths) == 1 and paths[0].stat().st_size > 1000
    again, _ = run_suite(suite, results_dir=tmp_path / "r2", progress=False)
    assert all(c["predictions_from_cache"] for c in again["cells"])
    assert again["cells"][0]["learning_curve"]["points"] == lc["points"]


@pytest.mark.slow
def test_real_cnmc_curve_counts_patients(tmp_path, dataset_dir):
    """Real data: C-NMC mini (60 cells, 37 patients); units are patients, never split."""
    cnmc = dataset_dir("cnmc2019_mini")
    f = tmp_path / "s.toml"
    f.write_text(
        f"""
[suite]
name = "real-curve"
[data]
dataset = "imagefolder"
path = "{cnmc.as_posix()}"
[[protocol]]
kind = "learning-curve"
backbones = ["efficientnet_lite0"]
classifiers = ["svm-linear"]
folds = 3
fractions = [0.25, 1.0]
repeats = 2
n_boot = 200
"""
    )
    suite = load_suite(str(f))
    record, _ = run_suite(suite, results_dir=tmp_path / "r", progress=False)
    lc = record["cells"][0]["learning_curve"]
    small, full = lc["points"]
    assert full["test_units"] == 37 and small["test_units"] == 37
    assert small["n_units"] < full["n_units"] <= 37 * 2 / 3 + 2  # patients, not cells
    assert full["n_images"] > full["n_units"]  # several cells per patient


@pytest.mark.slow
def test_fine_tuned_curve_plans_its_cost_and_runs(tmp_path):
    """Model 2 at every point (a tiny throwaway backbone): the plan shows the fine-tunes."""
    from bench.cli import main
    from bench.plan import plan_rows
    from tests.test_end_to_end import ThrowawayPlugin

    registry = get_registry()
    registry.register(ThrowawayPlugin(), name="throwaway")
    try:
        f = tmp_path / "s.toml"
        f.write_text(
            SUITE.replace('"efficientnet_lite0"', '"colour-stats"')
            .replace('classifiers = ["svm-linear", "knn1"]', "classifiers = []")
            .replace("fractions = [0.5, 0.25, 1.0]", "fractions = [0.5, 1.0]")
            .replace(
                "repeats = 2",
                "repeats = 1\nfinetune = true\nsettings = { epochs = 1, batch_size = 4 }",
            )
        )
        assert main(["run", str(f), "--dry-run"]) == 0
        suite = load_suite(str(f), registry=registry)
        (row,) = plan_rows(suite, registry)[1]
        assert "0/6 fine-tunes done" in row.status and "training image-steps" in row.status
        record, _ = run_suite(suite, registry=registry, results_dir=tmp_path / "r", progress=False)
        cell = record["cells"][0]
        assert cell["classifier"] == "finetune" and cell["model"] == "Model 2"
        pts = cell["learning_curve"]["points"]
        assert [p["fraction"] for p in pts] == [0.5, 1.0] and len(
            cell["learning_curve"]["train_s"]
        ) == 6
    finally:
        registry.unregister("throwaway")
