"""The libsvm replay (plugins/fast_estimators/smo.py) against scikit-learn's SVC, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import SVC

from bench.crossval import cross_validate
from plugins.fast_estimators import smo, svm_replay
from plugins.fast_estimators.svm_replay import fit_binary, replay_applies, replay_matches_libsvm


def _problem(seed: int, n: int, d: int, kind: str, noise: float, n_test: int = 40):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + n_test, d)).astype(np.float32).astype(np.float64)
    if seed % 2:
        x = np.maximum(x, 0.0)  # ReLU features: zeros and ties
    if seed % 5 == 0:
        x[n // 2 : n] = x[: n - n // 2]  # repeated training rows
    y = (x[:, 0] - x[:, 1] + noise * rng.standard_normal(n + n_test) > 0.1).astype(int)
    k = x @ x.T
    gamma = 1.0 / (d * x[:n].var())
    if kind == "rbf":
        sq = np.einsum("ij,ij->i", x, x)
        k = np.exp(-gamma * np.maximum(sq[:, None] + sq[None, :] - 2.0 * k, 0.0))
    elif kind == "poly":
        k = (gamma * k) ** 3
    return k[:n, :n].copy(), k[n:, :n].copy(), y[:n], y[n:]


def _assert_same(ref: SVC, model, k_test: np.ndarray) -> None:
    assert np.array_equal(ref.support_, model.support)
    assert np.array_equal(ref.dual_coef_[0], -model.coef)
    assert np.array_equal(ref.intercept_, [model.rho])
    assert int(ref.n_iter_[0]) == model.n_iter
    decision = model.decision_function(k_test)
    assert np.array_equal(ref.decision_function(k_test), decision)
    assert np.array_equal(ref.predict(k_test), model.predict(decision))


CASES = [
    # seed, n, d, kernel, label noise, C, class_weight, string labels
    (0, 60, 4, "linear", 0.3, 1.0, None, False),
    (1, 150, 20, "rbf", 1.0, 1.0, None, True),
    (2, 200, 3, "poly", 0.5, 10.0, None, False),
    (3, 320, 30, "linear", 2.0, 0.1, "balanced", False),
    (4, 400, 8, "rbf", 0.2, 100.0, None, False),
    (5, 500, 12, "linear", 1.5, 1.0, {0: 2.0, 1: 0.5}, True),
    (6, 700, 50, "poly", 1.0, 1.0, None, False),
    (7, 900, 6, "rbf", 3.0, 5.0, "balanced", False),
]


@pytest.mark.parametrize(("seed", "n", "d", "kind", "noise", "C", "cw", "strings"), CASES)
def test_replay_is_libsvm_bit_for_bit(seed, n, d, kind, noise, C, cw, strings):
    k, k_test, y, _ = _problem(seed, n, d, kind, noise)
    if strings:
        y = np.where(y == 1, "leukemia", "healthy")
        cw = {"healthy": cw[0], "leukemia": cw[1]} if isinstance(cw, dict) else cw
    ref = SVC(kernel="precomputed", C=C, class_weight=cw).fit(k, y)
    _assert_same(ref, fit_binary(k, y, C=C, class_weight=cw), k_test)


def test_long_runs_shrink_compact_and_unshrink_like_libsvm():
    """Thousands of iterations: shrinking, the compacted working set (more than once), the
    final gradient reconstruction - and the same model as libsvm."""
    k, k_test, y, _ = _problem(11, 1500, 40, "linear", 4.0)
    model = fit_binary(k, y)
    assert model.n_iter > 3000
    classes, yi = np.unique(y, return_inverse=True)
    order = np.argsort(yi, kind="stable")
    pos = np.empty(len(y), np.int64)
    pos[order] = np.arange(len(y))
    *_, compactions = smo.solve(
        k,
        np.diagonal(k).copy(),
        np.where(yi == 0, 1.0, -1.0),
        np.ones(len(y)),
        pos,
        1e-3,
        True,
        svm_replay.COMPACT_FRACTION,
    )
    assert compactions >= 2
    _assert_same(SVC(kernel="precomputed").fit(k, y), model, k_test)


def test_without_shrinking_and_with_a_loose_tolerance():
    k, k_test, y, _ = _problem(12, 600, 10, "rbf", 1.0)
    for params in ({"shrinking": False}, {"tol": 0.1}):
        ref = SVC(kernel="precomputed", **params).fit(k, y)
        _assert_same(ref, fit_binary(k, y, **params), k_test)
    k, k_test, y, _ = _problem(14, 500, 30, "linear", 2.0)  # several 1,000-step phases
    params = {"shrinking": False, "class_weight": "balanced", "C": 10.0}
    model = fit_binary(k, y, **params)
    assert model.n_iter > 2000
    _assert_same(SVC(kernel="precomputed", **params).fit(k, y), model, k_test)


def test_non_positive_definite_kernels_take_libsvms_tau():
    """A sigmoid kernel is not positive semi-definite: libsvm's ``TAU`` floor is taken."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal((340, 12))
    k = np.tanh(0.1 * (x @ x.T) - 1.0)
    y = (x[:, 0] + 0.5 * rng.standard_normal(340) > 0).astype(int)
    for shrinking in (True, False):
        ref = SVC(kernel="precomputed", C=10.0, shrinking=shrinking).fit(k[:300, :300], y[:300])
        _assert_same(
            ref, fit_binary(k[:300, :300], y[:300], C=10.0, shrinking=shrinking), k[300:, :300]
        )


def test_the_row_order_does_not_matter_to_the_replay_only_libsvms_order():
    """Rows shuffled: libsvm's order follows the labels' order, as the replay's positions do."""
    k, k_test, y, _ = _problem(13, 400, 15, "linear", 1.0)
    p = np.random.default_rng(0).permutation(len(y))
    ref = SVC(kernel="precomputed").fit(k[np.ix_(p, p)], y[p])
    _assert_same(ref, fit_binary(k[np.ix_(p, p)], y[p]), k_test[:, p])


def test_the_process_check_and_when_the_replay_applies():
    assert replay_matches_libsvm()
    big = svm_replay.REPLAY_MIN_ROWS
    assert replay_applies(big, 2, -1)
    assert not replay_applies(big - 1, 2, -1)  # libsvm is quicker than loading the replay
    assert not replay_applies(big, 3, -1)  # one-vs-one: libsvm
    assert not replay_applies(big, 2, 100)  # an iteration cap: libsvm (and its warning)
    assert not replay_applies(svm_replay.REPLAY_MAX_ROWS + 1, 2, -1)
    with pytest.raises(ValueError, match="two classes"):
        fit_binary(np.eye(3), [0, 1, 2])
    bad = np.eye(4)
    bad[1, 2] = np.nan  # SVC refuses a non-finite kernel; so does the replay
    with pytest.raises(ValueError, match="NaN"):
        SVC(kernel="precomputed").fit(bad, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="NaN or infinity"):
        fit_binary(bad, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="diagonal"):
        fit_binary(np.eye(4, dtype=np.float32), [0, 0, 1, 1])


def test_cross_validated_svms_are_the_same_with_and_without_the_replay(monkeypatch):
    rng = np.random.default_rng(3)
    n, d = 600, 50
    groups = np.repeat(np.arange(n // 3), 3)
    y = np.repeat(rng.integers(0, 2, n // 3), 3)
    X = np.maximum(rng.normal(size=(n, d)) + 0.5 * rng.normal(size=(2, d))[y], 0).astype(np.float32)
    parts = np.array_split(rng.permutation(n // 3), 4)
    folds = [
        (np.flatnonzero(~np.isin(groups, p)), np.flatnonzero(np.isin(groups, p))) for p in parts
    ]
    names = {"svm-linear": {}, "svm-gaussian": {}, "svm-cubic": {}}
    monkeypatch.setattr(svm_replay, "REPLAY_MIN_ROWS", 0)
    with_replay = cross_validate(X, y, folds, names, positive_index=1, n_jobs=2)
    notes: list[str] = []  # no room for the Gram: float64 blocks per fold, still the replay
    per_fold = cross_validate(
        X, y, folds, names, positive_index=1, n_jobs=2, memory_limit="5MB", note=notes.append
    )
    assert any("Gram matrix" in n for n in notes)
    monkeypatch.setattr(svm_replay, "REPLAY_MIN_ROWS", 10**9)
    with_libsvm = cross_validate(X, y, folds, names, positive_index=1, n_jobs=2)
    # libsvm on the per-fold blocks too: with AVX-512 BLAS the per-fold kernel products can
    # differ from the Gram's sub-blocks in the last bit, so each path is held to its own libsvm
    per_fold_libsvm = cross_validate(
        X, y, folds, names, positive_index=1, n_jobs=2, memory_limit="5MB", note=notes.append
    )
    for name in names:
        pairs = zip(with_replay[name], with_libsvm[name], per_fold[name], per_fold_libsvm[name])
        for a, c, b, d in pairs:
            assert np.array_equal(a.y_pred, c.y_pred) and np.array_equal(b.y_pred, d.y_pred), name
            assert np.array_equal(a.score, c.score) and np.array_equal(b.score, d.score), name
            assert np.array_equal(b.y_pred, c.y_pred), name
