"""The SVM fast path's in-place kernels, per-fold variances and binary predictions are
bit for bit what the plain computations give."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import SVC

from plugins.fast_estimators.gram import kernel_from_gram, kernel_in_place, rows_var, sq_norms
from plugins.fast_estimators.svm import binary_predictions


@pytest.mark.parametrize(
    "kind,degree", [("rbf", 3), ("poly", 3), ("poly", 2), ("poly", 5), ("sigmoid", 3)]
)
@pytest.mark.parametrize("gamma,coef0", [(0.01, 0.0), (0.3, 1.5)])
def test_kernel_in_place_equals_the_definition(kind, degree, gamma, coef0):
    rng = np.random.default_rng(degree)
    X = rng.normal(size=(301, 37))
    gram, sq = X @ X.T, sq_norms(X)
    options = {"gamma": gamma, "degree": degree, "coef0": coef0, "sq_a": sq, "sq_b": sq}
    fast = kernel_in_place(kind, gram.copy(), rows_per_chunk=64, **options)
    plain = kernel_from_gram(kind, gram.copy(), **options)
    np.testing.assert_array_equal(fast, plain)


def test_rows_var_equals_numpy_var_in_a_reused_buffer():
    rng = np.random.default_rng(0)
    X = np.maximum(rng.normal(size=(500, 64)), 0).astype(np.float32).astype(np.float64)
    buf = np.full((500, 64), np.nan)
    for rows in (np.arange(500), np.sort(rng.choice(500, 333, replace=False)), np.array([7])):
        assert rows_var(X, rows, buf) == X[rows].var()


def test_binary_predictions_are_libsvms():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 5))
    y = np.where(X[:, 0] + 0.5 * rng.normal(size=200) > 0, "leukemia", "healthy")
    for kernel in ("linear", "rbf"):
        k = X @ X.T if kernel == "linear" else np.exp(-0.2 * ((X[:, None] - X[None]) ** 2).sum(-1))
        svc = SVC(kernel="precomputed").fit(k[:150, :150], y[:150])
        k_test = k[150:, :150]
        got = binary_predictions(svc, svc.decision_function(k_test), k_test)
        np.testing.assert_array_equal(got, svc.predict(k_test))
    three = np.array(["a", "b", "c"])[rng.integers(0, 3, 150)]
    svc = SVC(kernel="precomputed").fit(k[:150, :150], three)
    dec = svc.decision_function(k[150:, :150])
    np.testing.assert_array_equal(
        binary_predictions(svc, dec, k[150:, :150]), svc.predict(k[150:, :150])
    )
