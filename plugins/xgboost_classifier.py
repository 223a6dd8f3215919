"""Builtin classifier: gradient-boosted trees through xgboost's scikit-learn API."""

from __future__ import annotations

import difflib
from typing import Any

from bench.errors import UserError
from bench.hookspecs import hookimpl
from bench.specs import ClassifierSpec

DEFAULTS: dict[str, Any] = {
    "n_estimators": 200,
    "max_depth": 4,
    "learning_rate": 0.1,
    "tree_method": "hist",
    "random_state": 0,
    "n_jobs": 1,
}


def _close(name: str, valid: set[str]) -> list[str]:
    """Closest valid option names (case-insensitive)."""
    lower = {v.lower(): v for v in valid}
    return [lower[m] for m in difflib.get_close_matches(name.lower(), sorted(lower), n=1)]


def build_xgboost(**options: Any) -> Any:
    """A fresh ``xgboost.XGBClassifier`` (seeded, one thread); unknown options -> UserError."""
    from xgboost import XGBClassifier

    valid = set(XGBClassifier().get_params())
    bad = sorted(set(options) - valid)
    if bad:
        hints = "".join(f" ({b!r}: did you mean {m[0]!r}?)" for b in bad if (m := _close(b, valid)))
        raise UserError(
            f"classifier 'xgboost': unknown option(s) {', '.join(map(repr, bad))}{hints}; "
            "see xgboost.XGBClassifier's parameters"
        )
    return XGBClassifier(**{**DEFAULTS, **options})


@hookimpl
def leukobench_classifiers() -> ClassifierSpec:
    """xgboost's gradient-boosted trees (beyond the paper)."""
    return ClassifierSpec(
        name="xgboost",
        factory=build_xgboost,
        description="gradient-boosted trees (xgboost, hist, 200 rounds, depth 4, eta 0.1)",
        paper_label="XGBoost",
        in_paper=False,
    )
