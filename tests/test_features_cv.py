"""Model 1 protocol: fast path == plain scikit-learn, parallel == serial, any estimator works."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.naive_bayes import GaussianNB

from bench.crossval import FoldPrediction, cross_validate
from bench.errors import UserError
from bench.hookspecs import hookimpl
from bench.registry import get_registry
from bench.specs import ClassifierSpec
from plugins.sklearn_classifiers import reference_estimator

PAPER_SIX = ["dt", "lda", "svm-linear", "svm-gaussian", "svm-cubic", "knn1"]


def _data(n=240, d=400, k=2, seed=0, n_folds=4):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n // 4), 4)
    y = np.repeat(rng.integers(0, k, n // 4), 4)
    centres = rng.normal(size=(k, d)) * (rng.random(d) < 0.1)
    X = np.maximum(rng.normal(size=(n, d)) + 1.2 * centres[y], 0).astype(np.float32)
    parts = np.array_split(rng.permutation(n // 4), n_folds)
    folds = []
    for p in parts:
        test = np.flatnonzero(np.isin(groups, p))
        folds.append((np.setdiff1d(np.arange(n), test), test))
    return X, y, folds


@pytest.mark.parametrize("k", [2, 3])
def test_fast_path_equals_plain_sklearn(k):
    X, y, folds = _data(k=k, seed=k)
    options = {name: {} for name in PAPER_SIX}
    options["svm-gaussian"] = {"standardize": True, "C": 5}
    res = cross_validate(X, y, folds, options, positive_index=1 if k == 2 else None)
    reg = get_registry()
    for name, opts in options.items():
        ref = reference_estimator(reg.build_classifier(name, **opts))
        for fp, (train, test) in zip(res[name], folds, strict=True):
            expected = clone(ref).fit(X[train], y[train]).predict(X[test])
            assert np.array_equal(fp.y_pred, expected), (name, fp.fold)
            assert np.array_equal(fp.test_index, test) and np.array_equal(fp.y_true, y[test])
            if k == 2:
                assert fp.score.shape == (len(test),)
            elif name in ("lda", "knn1", "dt"):
                assert fp.score.shape == (len(test), k)
                np.testing.assert_allclose(fp.score.sum(axis=1), 1)
            else:
                assert fp.score is None  # SVC has no probabilities


def test_scores_follow_the_positive_class():
    X, y, folds = _data(seed=4)
    one = cross_validate(X, y, folds, {"svm-linear": {}, "lda": {}}, positive_index=1)
    zero = cross_validate(X, y, folds, {"svm-linear": {}, "lda": {}}, positive_index=0)
    for a, b in zip(one["svm-linear"], zero["svm-linear"], strict=True):
        np.testing.assert_allclose(a.score, -b.score)
    for a, b in zip(one["lda"], zero["lda"], strict=True):
        np.testing.assert_allclose(a.score, 1 - b.score, atol=1e-12)


def test_parallel_equals_serial():
    X, y, folds = _data(seed=5)
    opts = {name: {} for name in PAPER_SIX + ["rf", "logreg"]}
    opts["rf"] = {"n_estimators": 20}
    serial = cross_validate(X, y, folds, opts, positive_index=1, n_jobs=1)
    parallel = cross_validate(X, y, folds, opts, positive_index=1, n_jobs=2)
    for name in opts:
        for a, b in zip(serial[name], parallel[name], strict=True):
            assert np.array_equal(a.y_pred, b.y_pred) and np.array_equal(a.score, b.score), name


class _ThirdParty:
    """A plugin the engine has never heard of, with a plain scikit-learn estimator."""

    @staticmethod
    @hookimpl
    def leukobench_classifiers():
        return ClassifierSpec(name="gnb", factory=lambda **o: GaussianNB(**o), paper_label="NB")


def test_any_third_party_estimator_and_progress():
    reg = get_registry()
    reg.register(_ThirdParty(), name="third-party")
    X, y, folds = _data(seed=6)
    seen = []
    res = cross_validate(
        X,
        y,
        folds,
        {"gnb": {}},
        positive_index=1,
        registry=reg,
        progress=lambda n, f: seen.append((n, f)),
    )
    assert sorted(seen) == [("gnb", i) for i in range(len(folds))]
    for fp, (train, test) in zip(res["gnb"], folds, strict=True):
        ref = GaussianNB().fit(X[train], y[train])
        assert np.array_equal(fp.y_pred, ref.predict(X[test]))
        np.testing.assert_allclose(fp.score, ref.predict_proba(X[test])[:, 1])
        assert isinstance(fp, FoldPrediction) and fp.fit_s >= 0


def test_bad_input_is_a_user_error():
    X, y, folds = _data(seed=7)
    with pytest.raises(UserError, match="overlap"):
        cross_validate(X, y, [(np.arange(10), np.arange(5))], {"knn1": {}}, positive_index=1)
    with pytest.raises(UserError, match="unknown classifier"):
        cross_validate(X, y, folds, {"svm-quartic": {}}, positive_index=1)
    with pytest.raises(UserError, match="bogus"):
        cross_validate(X, y, folds, {"knn1": {"bogus": 2}}, positive_index=1)
