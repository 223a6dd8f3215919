"""Builtin classifiers: the paper's six (Table 1), logistic regression, random forest, and
three opt-in approximate SVMs for 20,000+ images (labelled "≈", never in the paper's six).

The SVMs, 1-NN, LDA and the decision tree are scikit-learn-compatible
estimators from :mod:`plugins.fast_estimators` that implement the fold fast
path (:class:`bench.fold_fastpath.FoldFastPath`): under cross-validation they
share one Gram matrix, one scatter matrix or one presort across all folds.
Each one's predictions equal the plain scikit-learn estimator returned by
``reference()``. See docs/classifiers.md for MATLAB's defaults and what was
chosen here.
"""

from __future__ import annotations

import difflib
from typing import Any

from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from bench.errors import UserError
from bench.hookspecs import hookimpl
from bench.specs import ClassifierSpec
from plugins.fast_estimators import (
    EuclideanKNN,
    ExactTree,
    KernelSVC,
    LiblinearSVC,
    NystroemSVC,
    SmallSideLDA,
)

# -- factories --------------------------------------------------------------------


def _close(name: str, valid: set[str]) -> list[str]:
    """Closest valid option names (case-insensitive)."""
    lower = {v.lower(): v for v in valid}
    return [lower[m] for m in difflib.get_close_matches(name.lower(), sorted(lower), n=1)]


def build(name: str, cls: type, defaults: dict[str, Any], options: dict[str, Any]) -> Any:
    """``cls(**defaults, **options)``; unknown option names or bad values -> UserError."""
    valid = set(cls().get_params())
    bad = sorted(set(options) - valid)
    if bad:
        hints = "".join(f" ({b!r}: did you mean {m[0]!r}?)" for b in bad if (m := _close(b, valid)))
        raise UserError(
            f"classifier {name!r}: unknown option(s) {', '.join(map(repr, bad))}{hints}; "
            f"valid options: {', '.join(sorted(valid))}"
        )
    estimator = cls(**{**defaults, **options})
    try:
        if hasattr(estimator, "check_params"):
            estimator.check_params()
        elif hasattr(estimator, "_validate_params"):
            estimator._validate_params()
    except (ValueError, TypeError) as exc:
        raise UserError(f"classifier {name!r}: bad option value: {exc}") from exc
    return estimator


def reference_estimator(estimator: Any) -> Any:
    """The plain scikit-learn estimator a builtin one reproduces (itself if none)."""
    ref = getattr(estimator, "reference", None)
    return ref() if callable(ref) else estimator


def _factory(name: str, cls: type, **defaults: Any):
    def factory(**options: Any) -> Any:
        return build(name, cls, defaults, options)

    factory.__name__ = f"build_{name.replace('-', '_')}"
    factory.__doc__ = f"A fresh {cls.__name__} for classifier {name!r} (defaults {defaults})."
    return factory


_SPECS = [
    (
        "dt",
        "Decision Tree",
        True,
        "CART decision tree, at most 20 splits (MATLAB MaxNumSplits=20 -> max_leaf_nodes=21), Gini",
        _factory("dt", ExactTree, max_leaf_nodes=21, random_state=0),
    ),
    (
        "lda",
        "Linear Discriminant",
        True,
        "linear discriminant (pooled covariance, pseudo-inverse via scikit-learn's svd solver)",
        _factory("lda", SmallSideLDA),
    ),
    (
        "svm-linear",
        "SVM (linear)",
        True,
        "SVM, linear kernel, C=1",
        _factory("svm-linear", KernelSVC, kernel="linear"),
    ),
    (
        "svm-gaussian",
        "SVM (Gaussian)",
        True,
        "SVM, Gaussian (RBF) kernel, C=1, gamma='scale'",
        _factory("svm-gaussian", KernelSVC, kernel="rbf"),
    ),
    (
        "svm-cubic",
        "SVM (cubic)",
        True,
        "SVM, cubic polynomial kernel (gamma <x,z> + 1)^3, C=1, gamma='scale'",
        _factory("svm-cubic", KernelSVC, kernel="poly", degree=3, coef0=1.0),
    ),
    (
        "knn1",
        "1-NN",
        True,
        "1-nearest neighbour, Euclidean distance",
        _factory("knn1", EuclideanKNN, n_neighbors=1),
    ),
    (
        "logreg",
        "Logistic Regression",
        False,
        "L2 logistic regression (lbfgs, C=1, max_iter=2000)",
        _factory("logreg", LogisticRegression, max_iter=2000, random_state=0),
    ),
    (
        "rf",
        "Random Forest",
        False,
        "random forest, 200 trees, sqrt(d) features per split",
        _factory("rf", RandomForestClassifier, n_estimators=200, random_state=0, n_jobs=1),
    ),
]

# Opt-in approximations of the three SVMs (name, label, exact classifier, description, factory):
# fast at 20,000+ images, not exact, and labelled so in every table (docs/classifiers.md).
_APPROXIMATE = [
    (
        "svm-linear-approx",
        "SVM (linear) ≈ liblinear",
        "svm-linear",
        "APPROXIMATE linear SVM: the L2-loss (squared hinge) SVM, C=1, solved by liblinear "
        "in the primal (LinearSVC, Newton; loss='hinge' for SVC's own objective), "
        "intercept regularised (intercept_scaling='auto')",
        _factory("svm-linear-approx", LiblinearSVC),
    ),
    (
        "svm-gaussian-nystroem",
        "SVM (Gaussian) ≈ Nyström",
        "svm-gaussian",
        "APPROXIMATE Gaussian SVM: Nystroem map of the RBF kernel (gamma='scale', "
        "n_components=1000 training rows, random_state=0) + liblinear's L2-loss linear SVM (C=1)",
        _factory("svm-gaussian-nystroem", NystroemSVC, kernel="rbf"),
    ),
    (
        "svm-cubic-nystroem",
        "SVM (cubic) ≈ Nyström",
        "svm-cubic",
        "APPROXIMATE cubic SVM: Nystroem map of (gamma <x,z> + 1)^3 (gamma='scale', "
        "n_components=1000 training rows, random_state=0) + liblinear's L2-loss linear SVM (C=1)",
        _factory("svm-cubic-nystroem", NystroemSVC, kernel="poly", degree=3, coef0=1.0),
    ),
]


@hookimpl
def leukobench_classifiers() -> list[ClassifierSpec]:
    """The paper's six, logistic regression, random forest and the approximate SVMs."""
    exact = [
        ClassifierSpec(name=n, factory=f, description=desc, paper_label=label, in_paper=paper)
        for n, label, paper, desc, f in _SPECS
    ]
    approximate = [
        ClassifierSpec(name=n, factory=f, description=desc, paper_label=label, approximates=of)
        for n, label, of, desc, f in _APPROXIMATE
    ]
    return exact + approximate


__all__ = [
    "EuclideanKNN",
    "ExactTree",
    "KernelSVC",
    "LiblinearSVC",
    "NystroemSVC",
    "SmallSideLDA",
    "build",
    "leukobench_classifiers",
    "reference_estimator",
]
