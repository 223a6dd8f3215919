"""The d-side LDA solved for every fold at once (plugins/fast_estimators/lda_scatter_folds.py)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from bench.crossval import cross_validate
from bench.fold_fastpath import CVContext, FoldView
from bench.memory_budget import MemoryBudget
from plugins.fast_estimators import fold_blocks, lda_scatter_folds
from plugins.fast_estimators.lda import SmallSideLDA
from tests.fixtures.lda import class_shifted_relu, fold_fits


def _tall(n=600, d=40, k=2, seed=0, n_folds=5):
    """More samples than features: ReLU features with a class shift, grouped folds."""
    return class_shifted_relu(n, d, k, seed, n_folds, group=3, shift=0.6, offset=0.2, zero_column=5)


def _methods(X, y, folds, **params):
    """``(method_, estimator, output)`` of each fold as cross_validate would fit it."""
    out = []
    for (train, _), (est, res) in zip(folds, fold_fits(X, y, folds, **params), strict=True):
        if res is None:
            est = SmallSideLDA(**params).fit(X[train], y[train])
        out.append((est.method_, est, res))
    return out


def _assert_sklearn(X, y, folds, methods, **params):
    for (train, test), (_, est, _) in zip(folds, methods, strict=True):
        ref = LinearDiscriminantAnalysis(**params).fit(X[train].astype(np.float64), y[train])
        x_test = X[test].astype(np.float64)
        assert np.array_equal(est.predict(x_test), ref.predict(x_test))
        np.testing.assert_allclose(est.predict_proba(x_test), ref.predict_proba(x_test), atol=1e-9)


@pytest.mark.parametrize("k", [2, 3])
def test_every_fold_equals_scikit_learn_and_the_per_fold_solve(k):
    X, y, folds = _tall(k=k, seed=k)
    methods = _methods(X, y, folds)
    assert [m for m, _, _ in methods] == ["scatter-folds"] * len(folds)
    _assert_sklearn(X, y, folds, methods)
    for (train, _), (_, est, _) in zip(folds, methods, strict=True):
        alone = SmallSideLDA().fit(X[train], y[train])  # the fold's own downdated scatter
        assert alone.method_ == "scatter"
        np.testing.assert_allclose(est.coef_, alone.coef_, rtol=1e-9, atol=1e-12)
    res = cross_validate(X, y, folds, {"lda": {}}, positive_index=1 if k == 2 else None)
    for fold, (_, est, _) in zip(res["lda"], methods, strict=True):
        assert np.array_equal(fold.y_pred, est.predict(X[folds[fold.fold][1]]))


def test_user_priors_are_the_folds_priors():
    X, y, folds = _tall(k=3, seed=4)
    methods = _methods(X, y, folds, priors=[0.5, 0.3, 0.2])
    assert {m for m, _, _ in methods} == {"scatter-folds"}
    _assert_sklearn(X, y, folds, methods, priors=[0.5, 0.3, 0.2])


def test_a_feature_that_is_zero_on_a_folds_training_rows_stays_batched():
    """Non-zero only on fold 0's test rows: zero in that fold's Xw, varying in the run."""
    X, y, folds = _tall(seed=6)
    X[:, 9] = 0.0
    X[folds[0][1][:7], 9] = 1.5
    methods = _methods(X, y, folds)
    assert [m for m, _, _ in methods] == ["scatter-folds"] * len(folds)
    _assert_sklearn(X, y, folds, methods)


def test_a_constant_non_zero_feature_goes_to_scikit_learn():
    """Constant within every class on a fold's training rows (not zero): sklearn's std is noise."""
    X, y, folds = _tall(seed=7)
    X[:, 11] = 0.7
    X[folds[2][1][:4], 11] = 3.0  # varies in the run, constant on fold 2's training rows
    methods = _methods(X, y, folds)
    assert methods[2][0] == "sklearn"
    assert methods[0][0] == "scatter-folds"
    _assert_sklearn(X, y, folds, methods)


def test_repeated_training_rows_are_solved_on_their_own():
    X, y, folds = _tall(seed=8)
    train, test = folds[1]
    folds[1] = (np.concatenate([train, train[:5]]), test)
    methods = _methods(X, y, folds)
    assert methods[1][2] is None  # neither the batched solve nor the downdated scatter
    assert methods[0][0] == "scatter-folds"
    _assert_sklearn(X, y, folds, methods)


def test_rows_in_neither_part_of_a_fold():
    """A fold that leaves rows out of both parts: the downdate is only the preconditioner."""
    X, y, folds = _tall(seed=13)
    train, test = folds[0]
    folds[0] = (train[20:], test)
    methods = _methods(X, y, folds)
    assert methods[0][0] == "scatter-folds"  # the batched solve works on X[train] itself
    assert _methods(X, y, folds[:1])[0][0] == "scatter"  # alone: refined to X[train]'s own
    _assert_sklearn(X, y, folds, methods)
    _assert_sklearn(X, y, folds[:1], _methods(X, y, folds[:1]))


def test_a_hold_out_is_solved_on_its_own():
    X, y, folds = _tall(seed=9)
    for few in (folds[:1], folds[:2]):
        assert all(m == "scatter" for m, _, _ in _methods(X, y, few))


def test_a_rank_deficient_run_falls_back_to_scikit_learn():
    """Two identical features: no positive-definite scatter, every fold is sklearn's own fit."""
    X, y, folds = _tall(seed=10)
    X[:, 12] = X[:, 13]
    methods = _methods(X, y, folds)
    assert all(m == "sklearn" for m, _, _ in methods)
    _assert_sklearn(X, y, folds, methods)


def test_many_distinct_fold_memberships_take_a_pass_per_fold(monkeypatch):
    """Statistics by a pass per fold instead of per block: the same folds, the same answers."""
    X, y, folds = _tall(seed=11)
    monkeypatch.setattr(fold_blocks, "membership_blocks", lambda *a: None)
    methods = _methods(X, y, folds)
    assert all(m == "scatter-folds" for m, _, _ in methods)
    _assert_sklearn(X, y, folds, methods)


def test_fold_memory_counts_the_shared_solve_until_it_is_done():
    X, y, folds = _tall(n=900, d=60, seed=12)
    ctx = CVContext(X, folds, budget=MemoryBudget(2**31), y=y)
    est = SmallSideLDA()
    first = est.fold_memory(ctx, len(folds[0][0]), len(folds[0][1]))
    assert first >= lda_scatter_folds.d_side_bytes(len(y), X.shape[1], 2 * len(folds))
    est.fit_predict_fold(FoldView(ctx, 0, *folds[0]), y[folds[0][0]])
    assert est.method_ == "scatter-folds"
    assert est.fold_memory(ctx, len(folds[1][0]), len(folds[1][1])) < first


def _gaussian(n=600, d=20, k=2, seed=0, n_folds=5):
    """Gaussian classes, random k-fold (a partition), float64."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = rng.normal(size=(n, d)) + 0.7 * rng.normal(size=(k, d))[y]
    parts = np.array_split(rng.permutation(n), n_folds)
    folds = [
        (np.sort(np.concatenate([p for j, p in enumerate(parts) if j != i])), np.sort(parts[i]))
        for i in range(n_folds)
    ]
    return X, y, folds, rng


@pytest.mark.parametrize("k", [2, 3])
def test_a_fold_singular_on_its_own_training_rows_is_not_batched(k):
    """Two features equal on fold 0's training rows only: the run's scatter is fine, fold 0's
    singular. Its right-hand side is orthogonal to the null direction, so without the probe
    column CG converged to a solution with a preconditioner-made null-space part."""
    X, y, folds, rng = _gaussian(k=k, seed=2)
    X[:, 4] = X[:, 3]
    test = folds[0][1]
    X[test, 4] = X[test, 3] + rng.normal(size=len(test))
    methods = _methods(X, y, folds)
    assert methods[0][0] != "scatter-folds"
    assert methods[1][0] == "scatter-folds"
    _assert_sklearn(X, y, folds, methods)


def test_an_inconsistent_fold_does_not_stop_the_others():
    """x4 = x3 + 0.5 y on fold 0's training rows: p^T A p <= 0 showed up as an exception that
    failed every fold; now that fold alone is refused."""
    X, y, folds, rng = _gaussian(k=3, seed=0)
    X[:, 4] = X[:, 3] + 0.5 * y
    X[folds[0][1], 4] = rng.normal(size=len(folds[0][1]))
    methods = _methods(X, y, folds)
    assert methods[0][0] != "scatter-folds"
    _assert_sklearn(X, y, folds, methods)
    res = cross_validate(X, y, folds, {"lda": {}}, positive_index=None, n_jobs=1)
    for fold, (_, est, _) in zip(res["lda"], methods, strict=True):
        assert np.array_equal(fold.y_pred, est.predict(X[folds[fold.fold][1]]))


def test_rows_in_neither_part_are_downdated_too():
    """A hold-out whose left-out rows break a dependency of its training rows: downdating
    only the test rows left a positive-definite preconditioner for a singular fold."""
    X, y, folds, rng = _gaussian(seed=0)
    train, test = folds[0]
    left_out, train = train[:40], train[40:]
    X[:, 4] = X[:, 3]
    broken = np.concatenate([left_out, test])
    X[broken, 4] = rng.normal(size=len(broken))
    one = [(train, test)]
    methods = _methods(X, y, one)
    assert methods[0][0] != "scatter"
    _assert_sklearn(X, y, one, methods)
