"""Builtin classifiers: names, options, and predictions equal to plain scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from bench.errors import UserError
from bench.registry import get_registry
from plugins.fast_estimators import lda_solvers
from plugins.sklearn_classifiers import EuclideanKNN, KernelSVC, SmallSideLDA, reference_estimator

LABELS = {
    "dt": "Decision Tree",
    "lda": "Linear Discriminant",
    "svm-linear": "SVM (linear)",
    "svm-gaussian": "SVM (Gaussian)",
    "svm-cubic": "SVM (cubic)",
    "knn1": "1-NN",
}


def _data(n=160, d=300, k=2, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centres = rng.normal(size=(k, d)) * (rng.random(d) < 0.1)
    X = np.maximum(rng.normal(size=(n, d)) + 1.5 * centres[y], 0).astype(np.float32)
    return X[: n * 3 // 4], y[: n * 3 // 4], X[n * 3 // 4 :], y[n * 3 // 4 :]


def test_registry_has_the_nine_with_paper_labels():
    specs = get_registry().classifiers
    for name, label in LABELS.items():
        assert specs[name].paper_label == label and specs[name].in_paper
    for name in ("logreg", "rf", "xgboost"):
        assert name in specs and not specs[name].in_paper
    assert specs["dt"].factory().max_leaf_nodes == 21


def test_options_pass_through_and_bad_names_fail():
    reg = get_registry()
    assert reg.build_classifier("svm-gaussian", C=10).C == 10
    assert reg.build_classifier("xgboost", n_estimators=5).n_estimators == 5
    for name in ("svm-linear", "dt", "knn1", "lda", "xgboost", "rf"):
        with pytest.raises(UserError, match="bogus"):
            reg.build_classifier(name, bogus=1)
    with pytest.raises(UserError, match="'c'.*did you mean 'C'"):
        reg.build_classifier("svm-linear", c=1)
    with pytest.raises(UserError, match="svm-gaussian"):
        reg.build_classifier("svm-gaussian", C=-1)
    for name in list(LABELS) + ["logreg", "rf", "xgboost"]:
        est = reg.build_classifier(name, random_state=3)
        assert clone(est).get_params()["random_state"] == 3


@pytest.mark.parametrize("name", list(LABELS))
@pytest.mark.parametrize("k", [2, 3])
def test_builtin_equals_sklearn_reference(name, k):
    Xtr, ytr, Xte, yte = _data(k=k, seed=k)
    est = get_registry().build_classifier(name).fit(Xtr, ytr)
    ref = clone(reference_estimator(est)).fit(Xtr, ytr)
    assert np.array_equal(est.predict(Xte), ref.predict(Xte))
    if hasattr(ref, "decision_function") and not hasattr(ref, "predict_proba"):
        np.testing.assert_allclose(
            est.decision_function(Xte), ref.decision_function(Xte), atol=1e-6
        )
    elif hasattr(ref, "predict_proba"):
        # scikit-learn's LDA computes in float32 for float32 input; ours in float64.
        np.testing.assert_allclose(est.predict_proba(Xte), ref.predict_proba(Xte), atol=1e-4)


@pytest.mark.parametrize("kernel", ["linear", "rbf", "poly"])
def test_standardized_svm_and_knn_equal_pipeline(kernel):
    Xtr, ytr, Xte, _ = _data(seed=5)
    est = KernelSVC(kernel=kernel, standardize=True, coef0=1.0, C=3).fit(Xtr, ytr)
    ref = clone(est.reference()).fit(Xtr, ytr)
    assert np.array_equal(est.predict(Xte), ref.predict(Xte))
    np.testing.assert_allclose(est.decision_function(Xte), ref.decision_function(Xte), atol=1e-6)
    knn = EuclideanKNN(n_neighbors=5, standardize=True).fit(Xtr, ytr)
    assert np.array_equal(knn.predict(Xte), clone(knn.reference()).fit(Xtr, ytr).predict(Xte))


def test_lda_small_side_and_fallbacks():
    Xtr, ytr, Xte, _ = _data(n=200, d=400, seed=7)
    small = SmallSideLDA().fit(Xtr, ytr)
    assert small.method_ == "small-side"
    ref = small.reference().fit(Xtr, ytr)
    np.testing.assert_allclose(
        small.coef_, ref.coef_, rtol=1e-2, atol=1e-4 * np.abs(ref.coef_).max()
    )
    np.testing.assert_allclose(small.intercept_, ref.intercept_, rtol=1e-3)
    tall = SmallSideLDA().fit(Xtr[:, :20], ytr)  # n > d: the d x d scatter side
    assert tall.method_ == "scatter"
    tall_ref = tall.reference().fit(Xtr[:, :20], ytr)
    assert np.array_equal(tall.predict(Xte[:, :20]), tall_ref.predict(Xte[:, :20]))
    np.testing.assert_allclose(tall.coef_, tall_ref.coef_, rtol=1e-3, atol=1e-6)
    dup = np.vstack([Xtr, Xtr[:5]])  # duplicated rows: rank-deficient Gram -> fallback
    lda = SmallSideLDA().fit(dup, np.concatenate([ytr, ytr[:5]]))
    assert np.array_equal(
        lda.predict(Xte), lda.reference().fit(dup, np.concatenate([ytr, ytr[:5]])).predict(Xte)
    )
    shrunk = SmallSideLDA(solver="lsqr", shrinkage="auto").fit(Xtr, ytr)
    assert shrunk.method_ == "sklearn"


def test_lda_float32_preconditioned_solve_equals_float64(monkeypatch):
    """The refined float32 path reaches the float64 Cholesky's answer (and is taken)."""
    Xtr, ytr, _, _ = _data(n=200, d=400, seed=7)
    calls = []
    f32 = lda_solvers.solve_twice_f32

    def spy(*args):
        out = f32(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(lda_solvers, "solve_twice_f32", spy)
    mixed = SmallSideLDA().fit(Xtr.astype(np.float64), ytr)
    assert calls == [True]
    monkeypatch.setattr(lda_solvers, "solve_twice_f32", lambda *args: None)
    exact = SmallSideLDA().fit(Xtr.astype(np.float64), ytr)
    assert mixed.method_ == exact.method_ == "small-side"
    np.testing.assert_allclose(mixed.coef_, exact.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(mixed.intercept_, exact.intercept_, rtol=1e-8)


def test_xgboost_fits():
    Xtr, ytr, Xte, yte = _data(d=50, seed=2)
    est = get_registry().build_classifier("xgboost", n_estimators=20)
    proba = est.fit(Xtr, ytr).predict_proba(Xte)
    assert proba.shape == (len(Xte), 2) and np.mean(est.predict(Xte) == yte) > 0.6
