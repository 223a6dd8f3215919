"""Two-class ``SVC`` fits on a kernel block by the libsvm replay (:mod:`.smo`).

:func:`fit_binary` sets up the problem as scikit-learn's ``SVC(kernel="precomputed")``
hands it to libsvm - classes sorted, class 0 as ``y = +1`` and first in libsvm's
order, ``C`` times the class weight as each bound - and returns what libsvm's model
holds: support rows, dual coefficients, ``rho``. Decision values are libsvm's sums in
its order of support vectors, with scikit-learn's sign, so they and the predictions
equal ``SVC``'s bit for bit.

The replay is trusted only after :func:`replay_matches_libsvm` - once per process -
has compared it with ``SVC`` on small problems (ties, class weights, kernels that
shrink and unshrink); where that check fails (another libsvm), callers use ``SVC``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

REPLAY_MIN_ROWS = 2048
"""Below this many training rows libsvm itself is used: its fits take milliseconds there,
less than loading the compiled replay (~0.5 s per process)."""
REPLAY_MAX_ROWS = 46_340
"""libsvm's ``int`` products in ``reconstruct_gradient`` overflow beyond this; above it libsvm runs."""
COMPACT_FRACTION = 0.8
"""The replay's working set is compacted when at most this share of it is still active."""


def replay_bytes(n_train: int) -> int:
    """Upper estimate of the replay's own memory: the first compacted float32 block, vectors."""
    return int(COMPACT_FRACTION**2 * n_train * n_train) * 4 + 96 * n_train


@dataclass(frozen=True)
class BinaryModel:
    """A fitted two-class SVC as libsvm holds it."""

    classes: np.ndarray
    support: np.ndarray
    """Rows of the training block that are support vectors, in libsvm's order."""
    coef: np.ndarray
    """libsvm's ``sv_coef`` (``y_i alpha_i``) of those rows."""
    rho: float
    n_iter: int

    def decision_function(self, k_test: np.ndarray) -> np.ndarray:
        """``SVC.decision_function`` of a test x train kernel block."""
        from plugins.fast_estimators.smo import decision_sums

        k = np.ascontiguousarray(k_test, dtype=np.float64)
        return -decision_sums(k, self.support, self.coef, self.rho)

    def predict(self, decision: np.ndarray) -> np.ndarray:
        """libsvm's vote from the decision values: the second class unless ``decision < 0``."""
        return self.classes[(~(decision < 0)).astype(np.intp)]


def fit_binary(
    k_train: np.ndarray,
    y: Any,
    *,
    C: float = 1.0,
    class_weight: Any = None,
    tol: float = 1e-3,
    shrinking: bool = True,
    diagonal: np.ndarray | None = None,
) -> BinaryModel:
    """``SVC(kernel="precomputed", C, class_weight, tol, shrinking).fit(k_train, y)`` by the replay.

    ``y`` must hold exactly two classes; ``k_train`` is the square kernel block, float64,
    or float32 (what libsvm reads of it) with its float64 ``diagonal``.
    """
    from plugins.fast_estimators.smo import solve

    y = np.asarray(y)
    classes, yi = np.unique(y, return_inverse=True)
    if len(classes) != 2:
        raise ValueError(f"the replay fits two classes, not {len(classes)}")
    weights = compute_class_weight(class_weight, classes=classes, y=y)
    bounds = np.array([C * weights[0], C * weights[1]])  # libsvm's weighted_C
    order = np.argsort(yi, kind="stable")  # libsvm's svm_group_classes
    pos = np.empty(len(yi), np.int64)
    pos[order] = np.arange(len(yi))
    ys = np.where(yi == 0, 1.0, -1.0)
    if k_train.dtype == np.float32:
        if diagonal is None:
            raise ValueError("a float32 kernel block needs its float64 diagonal")
        k = np.ascontiguousarray(k_train)
    else:
        k = np.ascontiguousarray(k_train, dtype=np.float64)
    qd = np.array(np.diagonal(k) if diagonal is None else diagonal, dtype=np.float64)
    if not (np.isfinite(k).all() and np.isfinite(qd).all()):  # as SVC's input check
        raise ValueError("the kernel block contains NaN or infinity")
    alpha, rho, n_iter, _ = solve(
        k, qd, ys, bounds[yi], pos, float(tol), bool(shrinking), COMPACT_FRACTION
    )
    support = order[np.abs(alpha[order]) > 0]
    return BinaryModel(classes, support, alpha[support], float(rho), int(n_iter))


def replay_applies(n_train: int, n_classes: int, max_iter: int) -> bool:
    """Whether a fold fit goes to the replay: two classes, no iteration cap, a size it helps."""
    return (
        n_classes == 2
        and max_iter == -1
        and REPLAY_MIN_ROWS <= n_train <= REPLAY_MAX_ROWS
        and replay_matches_libsvm()
    )


def _check_problems() -> list[tuple[np.ndarray, np.ndarray, dict]]:
    rng = np.random.default_rng(20261202)
    out = []
    for t, (n, d) in enumerate([(160, 6), (240, 40), (300, 3), (200, 12)]):
        x = rng.standard_normal((n, d)).astype(np.float32).astype(np.float64)
        if t == 2:
            x[n // 2 :] = x[: n - n // 2]  # repeated rows: ties everywhere
        y = (x[:, 0] + rng.standard_normal(n) * (0.5 + t) > 0).astype(int)
        k = x @ x.T
        if t % 2:
            sq = np.einsum("ij,ij->i", x, x)
            k = np.exp(-(np.maximum(sq[:, None] + sq[None, :] - 2 * k, 0)) / (d * x.var()))
        params = {"C": [1.0, 0.5, 10.0, 1.0][t]}
        if t == 3:
            params["class_weight"] = "balanced"
        out.append((k, y, params))
    return out


@functools.cache
def replay_matches_libsvm() -> bool:
    """Whether the replay gives ``SVC``'s model and decision values on small problems."""
    from sklearn.svm import SVC

    for k, y, params in _check_problems():
        ref = SVC(kernel="precomputed", **params).fit(k, y)
        mine = fit_binary(k, y, **params)
        same = (
            np.array_equal(ref.support_, mine.support)
            and np.array_equal(ref.dual_coef_[0], -mine.coef)  # scikit-learn's binary sign
            and np.array_equal(ref.intercept_, [mine.rho])
            and int(ref.n_iter_[0]) == mine.n_iter
            and np.array_equal(ref.decision_function(k), mine.decision_function(k))
        )
        if not same:
            return False
    return True
