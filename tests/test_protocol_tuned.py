"""The ``tuned`` protocol: nested grouped CV over a declared grid, on one shared Gram matrix."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, ParameterGrid

from bench.data.splits import make_folds
from bench.errors import UserError
from bench.protocols.tuned import expand_grid, inner_splits, nested_cross_validate
from bench.protocols.tuned.nested import select
from bench.registry import get_registry
from bench.runner import run_suite
from bench.suite import load_suite
from plugins.sklearn_classifiers import reference_estimator


def fc7_like(n: int = 240, d: int = 48, copies: int = 3, seed: int = 0):
    """Seeded (X, y, groups): ReLU of a low-rank code with a class shift, copies share a group."""
    rng = np.random.default_rng(seed)
    n_src = n // copies
    y_src = rng.integers(0, 2, n_src)
    z_src = rng.normal(size=(n_src, 8)) + 0.6 * y_src[:, None] * rng.normal(size=8)
    z = np.repeat(z_src, copies, axis=0) + 0.3 * rng.normal(size=(n_src * copies, 8))
    w = rng.normal(size=(8, d)) / np.sqrt(8)
    x = np.maximum(z @ w + 0.8 * rng.normal(size=(len(z), d)) - 0.5, 0)
    groups = np.repeat(np.arange(n_src), copies).astype(str)
    return x.astype(np.float32), np.repeat(y_src, copies), groups


GRID = {"svm-gaussian": {"C": [0.1, 1, 10]}, "logreg": {"C": [0.01, 0.1, 1]}}


def test_grid_order_is_parameter_grid_order():
    grid = {"svm-cubic": {"C": [1, 0.1], "coef0": [1.0, 0.0]}}
    points = expand_grid(grid, {"svm-cubic": {"tol": 1e-4}}, "grid")["svm-cubic"]
    assert [p.params for p in points] == list(ParameterGrid(grid["svm-cubic"]))
    assert all(p.options["tol"] == 1e-4 for p in points)
    assert points[0].label == "C=1, coef0=1"


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"svm-gaussian": {"C": []}}, "grid.svm-gaussian.C: expected a non-empty list"),
        ({"svm-gaussian": {"C": [1, float("nan")]}}, "grid.svm-gaussian.C[1]: nan is not a finite"),
        ({"svm-gaussian": {"C": [1, 1]}}, "repeated values"),
        ({"svm-gaussian": [1]}, "grid.svm-gaussian: expected a table"),
    ],
)
def test_bad_grids_name_the_key(grid, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        expand_grid(grid, {}, "grid")


def test_select_takes_the_first_of_ties_and_never_nan():
    assert select([0.5, 0.7, 0.7]) == 1
    assert select([float("nan"), 0.1]) == 1


def test_inner_folds_never_touch_the_outer_test_fold():
    X, y, g = fc7_like()
    outer = make_folds(y, g, folds=4, seed=0)
    inner = inner_splits(outer, y, g, folds=3, seed=0)
    for (train, test), folds in zip(outer, inner, strict=True):
        assert len(folds) == 3
        covered = np.sort(np.concatenate([te for _, te in folds]))
        assert np.array_equal(covered, np.sort(train))  # the inner CV partitions the training part
        for tr, te in folds:
            assert not set(tr) & set(test) and not set(te) & set(test)
            assert not set(g[tr]) & set(g[te])  # grouped


def test_nested_equals_gridsearchcv_on_the_same_folds():
    """Same choices and outer predictions as GridSearchCV(reference estimator) per outer fold."""
    X, y, g = fc7_like()
    outer = make_folds(y, g, folds=4, seed=0)
    inner = inner_splits(outer, y, g, folds=3, seed=0)
    grid = expand_grid(GRID, {}, "grid")
    result = nested_cross_validate(X, y, outer, inner, grid, positive_index=1)
    registry = get_registry()
    for name, r in result.items():
        for i, (train, test) in enumerate(outer):
            pos = {v: k for k, v in enumerate(train)}
            cv = [
                (np.array([pos[a] for a in tr]), np.array([pos[b] for b in te]))
                for tr, te in inner[i]
            ]
            ref = reference_estimator(registry.build_classifier(name))
            gs = GridSearchCV(ref, {"C": GRID[name]["C"]}, cv=cv).fit(X[train], y[train])
            assert gs.best_index_ == r.chosen[i]
            assert np.allclose(gs.cv_results_["mean_test_score"], r.inner[i])
            assert np.array_equal(gs.predict(X[test]), r.outer[i].y_pred)
            assert np.array_equal(r.outer[i].test_index, test)


def test_one_gram_matrix_serves_the_whole_grid(monkeypatch):
    from bench.fold_fastpath import CVContext

    made = []
    real = CVContext.shared

    def counting(self, key, factory):
        if key != "gram":
            return real(self, key, factory)

        def make():
            value = factory()
            made.append(value.shape)
            return value

        return real(self, key, make)

    monkeypatch.setattr(CVContext, "shared", counting)
    X, y, g = fc7_like()
    outer = make_folds(y, g, folds=3, seed=0)
    inner = inner_splits(outer, y, g, folds=3, seed=0)
    grid = expand_grid(
        {"svm-gaussian": {"C": [0.1, 1, 10]}, "svm-linear": {"C": [0.1, 1]}}, {}, "g"
    )
    nested_cross_validate(X, y, outer, inner, grid, positive_index=1)
    assert made == [(len(X), len(X))]  # one product for 5 candidates x (3 + 9) folds


SUITE = """
[suite]
name = "tuned-tiny"
[data]
dataset = "synthetic"
options = {{ n_per_class = 12, size = 64 }}
[[protocol]]
kind = "tuned"
backbones = ["efficientnet_lite0"]
grid = {grid}
folds = 3
inner_folds = 2
"""


def test_bad_tables_exit_before_any_image(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(SUITE.format(grid='{ "svm-gausian" = { C = [1] } }'))
    with pytest.raises(UserError, match="svm-gausian.*did you mean 'svm-gaussian'"):
        load_suite(str(f), registry=get_registry())
    f.write_text(SUITE.format(grid='{ "svm-gaussian" = { C = [-1] } }'))
    with pytest.raises(UserError, match=r"grid.svm-gaussian \(C=-1\)"):
        load_suite(str(f), registry=get_registry())
    f.write_text(SUITE.format(grid='{ "svm-gaussian" = { C = [1] } }') + "inner_fold = 3\n")
    with pytest.raises(UserError, match="inner_fold: unknown key; did you mean 'inner_folds'"):
        load_suite(str(f), registry=get_registry())


@pytest.mark.slow
def test_tuned_suite_runs_resumes_and_reports(tmp_path, capsys):
    f = tmp_path / "s.toml"
    f.write_text(
        SUITE.format(grid=json.dumps({"svm-gaussian": {"C": [0.01, 1]}}).replace(":", " ="))
    )
    suite = load_suite(str(f), registry=get_registry())
    from bench.cli import main
    from bench.plan import plan_rows

    assert main(["run", str(f), "--dry-run"]) == 0
    capsys.readouterr()
    (row,) = plan_rows(suite, get_registry())[1]
    assert "2 candidates x 9 folds = 18 fits on one shared Gram matrix" in row.status
    record, path = run_suite(suite, results_dir=tmp_path / "r", progress=False)
    cell = record["cells"][0]
    assert cell["status"] == "complete" and cell["protocol"] == "tuned"

    assert main(["report", str(path), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "Tuned settings per outer fold" in out and "Tuned by nested CV" in out
    assert "SVM (Gaussian), tuned C (nested CV)" in out
    t = cell["tuning"]
    assert len(t["per_fold"]) == 3 and t["inner_folds"] == 2
    assert {f["label"] for f in t["per_fold"]} <= {"C=0.01", "C=1"}
    assert 0 < t["stability"]["modal_share"] <= 1
    assert t["fits"] == 2 * (3 + 3 * 2)
    assert sorted(i for fold in cell["folds"] for i in fold["test_index"]) == list(range(24))
    again, _ = run_suite(suite, results_dir=tmp_path / "r2", progress=False)
    assert again["cells"][0]["predictions_from_cache"] is True
    assert again["cells"][0]["folds"] == cell["folds"]


def test_new_protocols_are_documented_and_their_suites_load():
    from pathlib import Path

    from bench.suite import builtin_suites

    docs = (Path(__file__).resolve().parents[1] / "docs" / "suites.md").read_text()
    registry = get_registry()
    for name in ("external", "learning-curve", "tuned"):
        proto = registry.protocol(name).factory()
        assert f'`kind = "{name}"`' in docs
        for setting in proto.table_keys:
            assert f"| `{setting.name}` |" in docs, (name, setting.name)
    for suite in ("external-aria-cnmc", "learning-curve", "tuned-svm"):
        assert suite in builtin_suites() and f"`{suite}`" in docs
        loaded = load_suite(suite, registry=registry)
        assert loaded.protocols[0]["kind"] in ("external", "learning-curve", "tuned")


@pytest.mark.slow
def test_real_cnmc_nested_cv_by_patient(tmp_path, dataset_dir):
    """Real data: C-NMC mini grouped by patient; the choice per fold is recorded and stable-or-not."""
    cnmc = dataset_dir("cnmc2019_mini")
    f = tmp_path / "s.toml"
    f.write_text(
        f"""
[suite]
name = "real-tuned"
[data]
dataset = "imagefolder"
path = "{cnmc.as_posix()}"
[[protocol]]
kind = "tuned"
backbones = ["efficientnet_lite0"]
grid = {{ "svm-linear" = {{ C = [0.001, 1] }} }}
folds = 3
inner_folds = 2
"""
    )
    record, _ = run_suite(load_suite(str(f)), results_dir=tmp_path / "r", progress=False)
    cell = record["cells"][0]
    t = cell["tuning"]
    groups = np.asarray(record["dataset"]["paths"])  # one record per image; patients in groups
    assert len(t["per_fold"]) == 3 and sum(t["stability"]["counts"].values()) == 3
    assert len(groups) == 60
    tested = sorted(i for fold in cell["folds"] for i in fold["test_index"])
    assert tested == list(range(60))
    assert t["nested_score"] == pytest.approx(cell["metrics"]["pooled"]["accuracy"])
