"""The n-side LDA solved for every fold at once (plugins/fast_estimators/lda_folds.py)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from bench.crossval import cross_validate
from bench.fold_fastpath import CVContext, FoldView
from bench.memory_budget import MemoryBudget
from plugins.fast_estimators import lda_folds
from plugins.fast_estimators.lda import SmallSideLDA
from plugins.fast_estimators.lda_solvers import mirror_lower
from tests.fixtures.lda import class_shifted_relu, fold_fits


def _wide(n=240, d=400, k=2, seed=0, n_folds=5):
    """Fewer samples than features: ReLU features with a class shift, grouped folds."""
    return class_shifted_relu(n, d, k, seed, n_folds, group=4, shift=0.5, offset=0.3, zero_column=7)


def _assert_sklearn(res, X, y, folds, **params):
    """Every fold's predictions are scikit-learn's LinearDiscriminantAnalysis(**params)'s."""
    for fold in res["lda"]:
        tr, te = folds[fold.fold]
        ref = LinearDiscriminantAnalysis(**params).fit(X[tr].astype(np.float64), y[tr])
        assert np.array_equal(fold.y_pred, ref.predict(X[te].astype(np.float64)))


def _methods(X, y, folds, **params):
    """Each fold's ``method_`` and output, as cross_validate's fast path would give them."""
    return [
        (getattr(est, "method_", None) if res is not None else None, res)
        for est, res in fold_fits(X, y, folds, **params)
    ]


@pytest.mark.parametrize("k", [2, 3])
def test_every_fold_equals_scikit_learn_and_the_per_fold_solve(k):
    X, y, folds = _wide(k=k, seed=k)
    res = cross_validate(X, y, folds, {"lda": {}}, positive_index=1 if k == 2 else None)
    for fold, methods in zip(res["lda"], _methods(X, y, folds), strict=True):
        train, test = folds[fold.fold]
        ref = LinearDiscriminantAnalysis().fit(X[train].astype(np.float64), y[train])
        assert np.array_equal(fold.y_pred, ref.predict(X[test].astype(np.float64)))
        assert methods[0] == "small-side-folds"
        alone = SmallSideLDA().fit(X[train], y[train])  # the fold solved on its own
        assert alone.method_ == "small-side"
        np.testing.assert_allclose(
            alone.predict_proba(X[test]), methods[1].proba, rtol=0, atol=1e-9
        )


def test_serial_and_parallel_runs_are_bit_identical():
    X, y, folds = _wide(seed=4)
    one = cross_validate(X, y, folds, {"lda": {}, "dt": {}}, positive_index=1, n_jobs=1)
    two = cross_validate(X, y, folds, {"lda": {}, "dt": {}}, positive_index=1, n_jobs=2)
    for a, b in zip(one["lda"], two["lda"], strict=True):
        assert np.array_equal(a.score, b.score)


def test_a_fold_it_cannot_vouch_for_is_solved_on_its_own():
    """A column constant (non-zero) within each class on one fold's training rows."""
    X, y, folds = _wide(seed=6)
    train, test = folds[2]
    X[train, 11] = np.where(y[train] == 1, 0.3, 0.7).astype(np.float32)
    X[test, 11] = 0.5
    methods = _methods(X, y, folds)
    assert methods[2][0] is None  # the generic path (SmallSideLDA.fit) takes this fold
    assert [m for i, (m, _) in enumerate(methods) if i != 2] == ["small-side-folds"] * 4
    res = cross_validate(X, y, folds, {"lda": {}}, positive_index=1)
    _assert_sklearn(res, X, y, folds)


def test_ill_conditioned_runs_fall_back_to_scikit_learn():
    """Repeated rows make every Gram singular: no fold is solved together."""
    X, y, folds = _wide(seed=8)
    X[1::4] = X[0::4]  # each group's second row repeats its first
    assert all(m is None for m, _ in _methods(X, y, folds))
    res = cross_validate(X, y, folds, {"lda": {}}, positive_index=1)
    _assert_sklearn(res, X, y, folds)


def test_a_fold_missing_a_class_is_solved_on_its_own():
    X, y, folds = _wide(k=3, seed=9)
    train, test = folds[0]
    keep = train[y[train] != 2]
    folds[0] = (keep, test)
    methods = _methods(X, y, folds)
    assert methods[0][0] is None and methods[1][0] == "small-side-folds"


def test_the_run_gram_bounds_every_fold_gram_from_below():
    """lambda_min(G_f) >= lambda_min(G_0) off the class indicators (the one condition check)."""
    X, y, folds = _wide(n=120, d=200, seed=10)
    x = X.astype(np.float64)

    def lam_min(rows):
        yr = y[rows]
        xr = x[rows]
        means = np.stack([xr[yr == c].mean(axis=0) for c in (0, 1)])
        xc = xr - means[yr]
        std = xc.std(axis=0)
        std[std == 0] = 1.0
        xw = xc / std / np.sqrt(len(rows))
        gram = xw @ xw.T
        ind = np.stack([(yr == c) / np.sqrt(np.sum(yr == c)) for c in (0, 1)], axis=1)
        proj = np.eye(len(rows)) - ind @ ind.T  # off the class indicators
        return np.linalg.eigvalsh(proj @ gram @ proj)[2]  # the two zeros are the indicators

    run = lam_min(np.arange(len(y)))
    for train, _ in folds:
        assert lam_min(train) >= run * (1 - 1e-9)


def test_memory_estimate_covers_the_batched_solve():
    X, y, folds = _wide(seed=11)
    ctx = CVContext(X, folds, budget=MemoryBudget(2**31), y=y)
    est = SmallSideLDA()
    first = est.fold_memory(ctx, len(folds[0][0]), len(folds[0][1]))
    assert first >= lda_folds.n_side_bytes(len(y), X.shape[1], 2 * len(folds))
    _methods(X, y, folds)  # fills nothing in ctx (a new context per call)
    est.fit_predict_fold(FoldView(ctx, 0, *folds[0]), y[folds[0][0]])
    assert est.fold_memory(ctx, len(folds[1][0]), len(folds[1][1])) < first


def test_a_hold_out_is_solved_on_its_own():
    """One or two n-side folds: the per-fold solve is cheaper, and hold-out records stay as they were."""
    X, y, folds = _wide(seed=12)
    for few in (folds[:1], folds[:2]):
        assert all(m == "small-side" for m, _ in _methods_generic(X, y, few))


def _methods_generic(X, y, folds):
    """``method_`` of each fold as cross_validate would fit it (fast path, else ``fit``)."""
    ctx = CVContext(X, folds, budget=MemoryBudget(2**31), y=y)
    out = []
    for i, (train, test) in enumerate(folds):
        est = SmallSideLDA()
        if est.fit_predict_fold(FoldView(ctx, i, train, test), y[train]) is None:
            est = SmallSideLDA().fit(X[train], y[train])
        out.append((est.method_, est))
    return out


def test_repeated_training_rows_are_solved_on_their_own():
    """A row listed twice weighs twice in X[train]: that fold must not be solved together."""
    X, y, folds = _wide(seed=13)
    train, test = folds[1]
    folds[1] = (np.concatenate([train, train[:5]]), test)
    methods = _methods(X, y, folds)
    assert methods[1][0] is None and methods[0][0] == "small-side-folds"
    res = cross_validate(X, y, folds, {"lda": {}}, positive_index=1)
    _assert_sklearn(res, X, y, folds)


def test_small_training_parts_of_a_large_run_are_solved_on_their_own():
    """Folds whose held-out parts are most of the run: n x n Schur blocks each, not worth it."""
    X, y, _ = _wide(n=400, d=600, seed=14)
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(y))
    folds = [(rows[i * 60 : (i + 1) * 60], rows[300 + i * 20 : 320 + i * 20]) for i in range(3)]
    ctx = CVContext(X, folds, budget=MemoryBudget(2**31), y=y)
    est = SmallSideLDA()
    assert est.fold_memory(ctx, 60, 20) == (2 * 60 * 60 + 3 * 60 * 600) * 8  # its own solve
    assert all(m == "small-side" for m, _ in _methods_generic(X, y, folds))


def test_tol_zero_is_scikit_learns_own_solve():
    """tol = 0 keeps scikit-learn's rounding-noise directions: only its own solver reproduces that."""
    X, y, folds = _wide(n=120, d=200, seed=15)
    res = cross_validate(X, y, folds, {"lda": {"tol": 0.0}}, positive_index=1)
    _assert_sklearn(res, X, y, folds, tol=0.0)


def test_bad_lda_input_is_one_user_error():
    from bench.errors import UserError
    from bench.registry import get_registry

    X, y, folds = _wide(n=60, d=80, seed=16)
    with pytest.raises(UserError, match="priors must be non-negative"):
        get_registry().build_classifier("lda", priors=[-0.2, 1.2])
    with pytest.raises(UserError, match="do not vary within any class"):
        cross_validate(np.zeros_like(X), y, folds, {"lda": {}}, positive_index=1, n_jobs=1)
    with pytest.raises(UserError, match="at least two classes"):
        cross_validate(X, np.zeros_like(y), folds, {"lda": {}}, positive_index=None)


def test_a_schur_block_that_fails_to_factorise_sends_every_fold_to_its_own_solve(monkeypatch):
    X, y, folds = _wide(seed=17)

    def refuse(*args, **kwargs):
        raise np.linalg.LinAlgError("not positive definite")

    monkeypatch.setattr(lda_folds.sla, "cho_factor", refuse)
    assert all(m is None for m, _ in _methods(X, y, folds))
    res = cross_validate(X, y, folds, {"lda": {}}, positive_index=1)
    _assert_sklearn(res, X, y, folds)


def test_a_feature_zero_on_a_folds_training_rows_only_stays_exactly_zero():
    """Non-zero only on fold 0's test rows: that fold's statistics must give it a mean and a
    spread of exactly 0 (sklearn's std 1), not rounding noise scaled up to a direction."""
    X, y, folds = _wide(seed=21)
    rng = np.random.default_rng(21)
    for col in range(11, 31):  # a shifted zero column comes back as noise: several, to be sure
        X[:, col] = 0.0
        X[folds[0][1], col] = rng.uniform(0.1, 3.0, len(folds[0][1]))
    res = cross_validate(X, y, folds, {"lda": {}}, positive_index=1, n_jobs=1)
    _assert_sklearn(res, X, y, folds)


@pytest.mark.parametrize("n", [1, 7, 255, 256, 257, 600])
def test_mirror_lower_equals_adding_the_transpose(n):
    rng = np.random.default_rng(n)
    a = np.tril(rng.standard_normal((n, n))).astype(np.float32)
    a[rng.random((n, n)) < 0.2] = -0.0  # its sign is what a + a.T makes of it
    a = np.tril(a)
    for order in "CF":
        b = np.array(a, order=order)
        ref = b + b.T
        ref[np.diag_indices_from(ref)] /= 2
        mirror_lower(b)
        np.testing.assert_array_equal(b.view(np.uint32), ref.view(np.uint32))
