"""ExactTree / plugins.fast_estimators.tree_builder grow exactly scikit-learn's DecisionTreeClassifier trees."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

import plugins.fast_estimators.tree as tree_module
from bench.crossval import cross_validate
from bench.errors import UserError
from bench.registry import get_registry
from benchmarks.test_bench_model1 import fc7_like, grouped_folds
from plugins.fast_estimators.presort import FEATURE_THRESHOLD, Presort
from plugins.fast_estimators.tree_builder import build_tree
from plugins.sklearn_classifiers import ExactTree


@pytest.fixture(autouse=True)
def always_the_fast_path(monkeypatch):
    """Test data is small: grow every tree with the fast builder, not scikit-learn's."""
    monkeypatch.setattr(tree_module, "FAST_MIN_ENTRIES", 0)


FIELDS = (
    "children_left",
    "children_right",
    "feature",
    "threshold",
    "impurity",
    "n_node_samples",
    "weighted_n_node_samples",
    "value",
)


def assert_same_tree(new, ref, X_test: np.ndarray) -> None:
    """Node-for-node equality of the fitted trees, and of their predictions."""
    a, b = new.tree_, ref.tree_
    assert a.node_count == b.node_count
    assert a.max_depth == b.max_depth
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    split = a.children_left != -1
    np.testing.assert_array_equal(a.missing_go_to_left[split], b.missing_go_to_left[split])
    np.testing.assert_array_equal(new.classes_, ref.classes_)
    np.testing.assert_array_equal(new.predict(X_test), ref.predict(X_test))
    np.testing.assert_array_equal(new.predict_proba(X_test), ref.predict_proba(X_test))


def fit_both(X, y, **params):
    new = ExactTree(**params).fit(X, y)
    ref = DecisionTreeClassifier(**params).fit(X, y)
    return new, ref


def make_data(kind: str, n: int, d: int, k: int, seed: int):
    rng = np.random.default_rng(seed)
    if kind == "normal":
        X = rng.normal(size=(n, d))
    elif kind == "integers":
        X = rng.integers(0, 4, size=(n, d)).astype(float)
    elif kind == "relu":  # many zeros, some all-zero (constant) columns
        X = np.maximum(rng.normal(size=(n, d)) - 0.7, 0)
        X[:, :: max(1, d // 5)] = 0.0
    elif kind == "duplicates":  # exact duplicate columns: ties between features
        base = rng.integers(0, 3, size=(n, 4)).astype(float)
        X = base[:, rng.integers(0, 4, d)]
    elif kind == "tiny":  # distinct values closer than FEATURE_THRESHOLD (1e-7)
        X = np.maximum(rng.normal(size=(n, d)), 0) * 1e-6
    else:  # negative values, repeated
        X = -np.round(rng.normal(size=(n, d)), 1)
    y = rng.integers(0, k, n)
    return X, y


@pytest.mark.parametrize("kind", ["normal", "integers", "relu", "duplicates", "tiny", "negative"])
@pytest.mark.parametrize("k", [2, 4])
def test_random_data_all_settings(kind, k):
    for seed in range(6):
        X, y = make_data(kind, n=60 + 25 * seed, d=12 + seed, k=k, seed=seed)
        params = {
            "max_leaf_nodes": (2, 5, 21, 1000)[seed % 4],
            "random_state": seed * 7,
            "min_samples_leaf": (1, 1, 3)[seed % 3],
        }
        new, ref = fit_both(X, y, **params)
        assert_same_tree(new, ref, X)


def test_grown_until_pure_leaves_and_min_samples_split():
    X, y = make_data("duplicates", n=300, d=20, k=3, seed=11)
    new, ref = fit_both(X, y, max_leaf_nodes=10_000, random_state=3)
    assert_same_tree(new, ref, X)
    new, ref = fit_both(X, y, max_leaf_nodes=50, random_state=3, min_samples_split=0.05)
    assert_same_tree(new, ref, X)
    new, ref = fit_both(
        X, y, max_leaf_nodes=50, max_depth=4, min_impurity_decrease=1e-3, random_state=5
    )
    assert_same_tree(new, ref, X)


@pytest.mark.parametrize("random_state", [0, 1, 42, 2024])
def test_fc7_like_slice(random_state):
    X, y, groups = fc7_like(n=720, d=512, seed=random_state % 3)
    train, test = grouped_folds(groups, k=5, seed=random_state)[0]
    new, ref = fit_both(X[train], y[train], max_leaf_nodes=21, random_state=random_state)
    assert_same_tree(new, ref, X[test])


@pytest.mark.parametrize("k", [2, 3, 6])
def test_long_features_prune_runs_of_positions(k):
    """Features with thousands of distinct values: the scan's coarse (256) and fine (32) runs
    are bounded and skipped; the tree is still scikit-learn's, for two classes and more."""
    X, _, _ = fc7_like(n=2400, d=48, seed=k)
    y = np.random.default_rng(k).integers(0, k, len(X))
    y[X[:, 3] > np.median(X[:, 3])] = 0  # one informative feature among noise
    for params in (
        {"max_leaf_nodes": 21, "random_state": k},
        {"max_leaf_nodes": 40, "random_state": 7, "min_samples_leaf": 5},
    ):
        new, ref = fit_both(X, y, **params)
        assert_same_tree(new, ref, X)


def test_small_data_is_grown_by_scikit_learn(monkeypatch):
    """Under FAST_MIN_ENTRIES feature values the compiled builder is not even loaded."""
    monkeypatch.setattr(tree_module, "FAST_MIN_ENTRIES", 10**6)

    def refuse(*args, **kwargs):
        raise AssertionError("the fast builder ran on small data")

    monkeypatch.setattr(tree_module.ExactTree, "_fit_fast", refuse)
    X, y = make_data("relu", n=200, d=15, k=2, seed=5)
    new, ref = fit_both(X, y, max_leaf_nodes=21, random_state=0)
    assert_same_tree(new, ref, X)
    X, y, groups = fc7_like(n=300, d=64, seed=2)
    folds = grouped_folds(groups, k=3)
    result = cross_validate(X, y, folds, {"dt": {}}, positive_index=1, n_jobs=2)
    plain = get_registry().build_classifier("dt").reference()
    for fp, (train, test) in zip(result["dt"], folds, strict=True):
        ref = plain.fit(X[train], y[train])
        np.testing.assert_array_equal(fp.y_pred, ref.predict(X[test]))
        np.testing.assert_array_equal(fp.score, ref.predict_proba(X[test])[:, 1])


def test_repeated_training_rows_under_cross_validation_weigh_twice():
    X, y, groups = fc7_like(n=300, d=20, seed=4)
    rng = np.random.default_rng(0)
    test = np.arange(250, 300)
    train = rng.choice(250, 250, replace=True)  # repeated rows, unsorted
    result = cross_validate(X, y, [(train, test)], {"dt": {}}, positive_index=1, n_jobs=1)
    ref = get_registry().build_classifier("dt").reference().fit(X[train], y[train])
    np.testing.assert_array_equal(result["dt"][0].y_pred, ref.predict(X[test]))
    np.testing.assert_array_equal(result["dt"][0].score, ref.predict_proba(X[test])[:, 1])


def test_data_too_large_for_the_packed_entries_is_fitted_by_scikit_learn(monkeypatch):
    import plugins.fast_estimators.tree_builder as builder

    monkeypatch.setattr(builder, "LAYOUT_BITS", 12)  # as if there were 2^20 rows
    X, y = make_data("normal", n=300, d=8, k=3, seed=1)
    state = np.random.RandomState(5)
    new = ExactTree(max_leaf_nodes=21, random_state=np.random.RandomState(5)).fit(X, y)
    ref = DecisionTreeClassifier(max_leaf_nodes=21, random_state=state).fit(X, y)
    assert_same_tree(new, ref, X)  # the seed was not drawn twice
    Xf, yf, groups = fc7_like(n=300, d=64, seed=3)
    folds = grouped_folds(groups, k=3)
    result = cross_validate(Xf, yf, folds, {"dt": {}}, positive_index=1, n_jobs=2)
    plain = get_registry().build_classifier("dt").reference()
    for fp, (train, test) in zip(result["dt"], folds, strict=True):
        np.testing.assert_array_equal(fp.y_pred, plain.fit(Xf[train], yf[train]).predict(Xf[test]))


def test_an_empty_training_fold_is_a_one_line_error():
    X, y, _ = fc7_like(n=120, d=16, seed=0)
    folds = [(np.array([], dtype=np.int64), np.arange(120))]
    with pytest.raises(UserError, match="fold 0"):
        cross_validate(X, y, folds, {"dt": {}}, positive_index=1, n_jobs=1)


def test_a_dataframe_keeps_its_feature_names(monkeypatch):
    pandas = pytest.importorskip("pandas")
    X, y = make_data("relu", n=150, d=6, k=2, seed=3)
    frame = pandas.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    for minimum in (0, 10**9):  # the fast builder, then scikit-learn's splitter
        monkeypatch.setattr(tree_module, "FAST_MIN_ENTRIES", minimum)
        new = ExactTree(max_leaf_nodes=21, random_state=0).fit(frame, y)
        ref = DecisionTreeClassifier(max_leaf_nodes=21, random_state=0).fit(frame, y)
        np.testing.assert_array_equal(new.feature_names_in_, ref.feature_names_in_)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.testing.assert_array_equal(new.predict(frame), ref.predict(frame))


def test_labels_are_any_classes():
    X, y = make_data("relu", n=200, d=15, k=4, seed=5)
    labels = np.array(["band", "lymph", "mono", "seg"])[y]
    new, ref = fit_both(X, labels, max_leaf_nodes=21, random_state=0)
    assert_same_tree(new, ref, X)
    new, ref = fit_both(X, np.zeros(200, dtype=int), max_leaf_nodes=21, random_state=0)
    assert_same_tree(new, ref, X)


def test_other_settings_fall_back_to_scikit_learn():
    X, y = make_data("relu", n=150, d=10, k=2, seed=2)
    for params in (
        {"criterion": "entropy", "max_leaf_nodes": 21},
        {"max_features": "sqrt", "max_leaf_nodes": 21},
        {"splitter": "random", "max_leaf_nodes": 21},
        {"class_weight": "balanced", "max_leaf_nodes": 21},
        {"max_leaf_nodes": None},
    ):
        assert not ExactTree(**params).fast_path_supported()
        new, ref = fit_both(X, y, random_state=0, **params)
        assert_same_tree(new, ref, X)
    w = np.linspace(0.5, 2.0, len(y))
    new = ExactTree(max_leaf_nodes=21, random_state=0).fit(X, y, sample_weight=w)
    ref = DecisionTreeClassifier(max_leaf_nodes=21, random_state=0).fit(X, y, sample_weight=w)
    assert_same_tree(new, ref, X)
    X_nan = X.copy()
    X_nan[::7, 3] = np.nan  # scikit-learn's missing-value support
    new, ref = fit_both(X_nan, y, max_leaf_nodes=21, random_state=0)
    assert_same_tree(new, ref, X_nan)


def test_presort_subset_equals_presort_of_rows():
    X, y = make_data("relu", n=180, d=9, k=2, seed=4)
    rows = np.sort(np.random.default_rng(0).choice(180, 120, replace=False))
    shared = build_tree(Presort(X), y[rows], 2, rows=rows, max_leaf_nodes=15, rand_r_state=99)
    alone = build_tree(Presort(X[rows]), y[rows], 2, max_leaf_nodes=15, rand_r_state=99)
    for name in ("feature", "threshold", "impurity", "n_node_samples", "value"):
        np.testing.assert_array_equal(getattr(shared, name), getattr(alone, name))


def test_cross_validation_fast_path_equals_reference():
    X, y, groups = fc7_like(n=600, d=256, seed=1)
    folds = grouped_folds(groups, k=4)
    result = cross_validate(X, y, folds, {"dt": {}}, positive_index=1, n_jobs=2)
    registry = get_registry()
    est = registry.build_classifier("dt")
    assert isinstance(est, ExactTree)
    for fp, (train, test) in zip(result["dt"], folds, strict=True):
        ref = est.reference().fit(X[train], y[train])
        np.testing.assert_array_equal(fp.y_pred, ref.predict(X[test]))
        np.testing.assert_array_equal(fp.score, ref.predict_proba(X[test])[:, 1])


@pytest.mark.slow
def test_full_size_benchmark_fold():
    X, y, groups = fc7_like()
    train, test = grouped_folds(groups)[3]
    new, ref = fit_both(X[train], y[train], max_leaf_nodes=21, random_state=0)
    assert_same_tree(new, ref, X[test])


def _reference_layout(X):
    """The flat presort layout, spelled out per column with numpy (see presort.py)."""
    n, d = X.shape
    threshold = FEATURE_THRESHOLD  # float32, added in float64
    sid, glg_parts, hdr = [], [], []
    groups = []
    for f in range(d):
        col = X[:, f]
        lo = col.min()
        above = np.flatnonzero(col > lo)
        bits = col[above].view(np.uint32)
        key = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))  # -0.0 before +0.0
        order = above[np.lexsort((above, key))]  # by value, ties by row
        values = np.concatenate([[lo], np.unique(col[order])])
        g = np.searchsorted(values, col[order])  # dense rank, 0 = the minimum
        lg = np.array(
            [
                int(np.sum(np.float32(values.astype(np.float64) + np.float64(threshold)) < v))
                for v in col[order]
            ],
            dtype=np.int64,
        )
        hdr.append(len(sid))
        sid += [n] + order.tolist()
        groups.append((np.concatenate([[0], g]), np.concatenate([[0], lg])))
    gmax = max(int(g.max()) for g, _ in groups)
    gbits = max(1, (gmax + 1).bit_length())
    for g, lg in groups:
        glg_parts.append((lg << gbits) | g)
    return np.array(sid), np.concatenate(glg_parts), np.array(hdr), gbits


@pytest.mark.parametrize("shape", [(1, 3), (9, 70), (130, 129), (64, 64)])
def test_presort_layout_equals_a_plain_per_column_sort(shape):
    rng = np.random.default_rng(shape[1])
    X = np.maximum(rng.standard_normal(shape), 0).astype(np.float32)
    X[:, ::5] = np.round(X[:, ::5], 1)  # ties
    X[:, 1::7] = 3.0  # constant columns
    X[0, 2::9] = -0.0  # both zeros in a column
    if len(X) > 2:  # values a threshold apart
        X[1, 3::11], X[2, 3::11] = np.float32(9.350724e-08), np.float32(1.9350725e-07)
    p = Presort(X)
    sid, glg, hdr, gbits = _reference_layout(X)
    assert p.gbits == gbits
    np.testing.assert_array_equal(p.sid, sid)
    np.testing.assert_array_equal(p.glg, glg)
    np.testing.assert_array_equal(p.hdr, hdr)
    np.testing.assert_array_equal(p.colmin, X.min(axis=0))
