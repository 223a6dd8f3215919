"""The learning curve's arithmetic: which folds to fit, and the score at each training size.

For outer grouped fold ``i``, repeat ``r`` and fraction ``f`` the model is fitted on
the nested subsample of fold ``i``'s training part and predicts fold ``i``'s whole
test part, so the test folds are the same for every fraction. Identical fits
(every repeat at ``f = 1``) are fitted once. At each ``(f, r)`` the ``k`` test
folds together predict every sample once; the point's score pools them, its
interval is a cluster bootstrap over the test units (all repeats of a unit move
together), and the spread over repeats (training-subsample variation) is shown
beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.cluster_stats import unit_summary
from bench.protocols.learning_curve.subsample import nested_subsets

__all__ = ["CurvePlan", "curve_plan", "summarise_curve"]


@dataclass
class CurvePlan:
    """Every fit of a learning curve, deduplicated.

    ``fits`` are the distinct ``(train rows, test rows)`` pairs to fit (in this
    order); ``where[(fold, repeat, j)]`` is the fit serving fold ``fold``, repeat
    ``repeat``, fraction ``fractions[j]``; ``units[(fold, repeat, j)]`` its number
    of training units and ``images[...]`` of training samples.
    """

    fractions: list[float]
    repeats: int
    n_folds: int
    fits: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    where: dict[tuple[int, int, int], int] = field(default_factory=dict)
    units: dict[tuple[int, int, int], int] = field(default_factory=dict)
    images: dict[tuple[int, int, int], int] = field(default_factory=dict)

    def fit_weight(self) -> float:
        """Training rows summed over the fits (a size-aware estimate of the work)."""
        return float(sum(len(tr) for tr, _ in self.fits))


def curve_plan(
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    labels: np.ndarray,
    groups: np.ndarray,
    fractions: Sequence[float],
    *,
    repeats: int,
    seed: int,
) -> CurvePlan:
    """The fits of a curve over ``splits`` (outer grouped folds), seeded per (fold, repeat)."""
    plan = CurvePlan(sorted(float(f) for f in fractions), int(repeats), len(splits))
    seen: dict[bytes, int] = {}
    for i, (train, test) in enumerate(splits):
        test = np.asarray(test, dtype=np.int64)
        for r in range(plan.repeats):
            subs = nested_subsets(train, labels, groups, plan.fractions, (seed, i, r))
            for j, sub in enumerate(subs):
                key = sub.rows.tobytes() + b"|" + test.tobytes()
                if key not in seen:
                    seen[key] = len(plan.fits)
                    plan.fits.append((sub.rows, test))
                plan.where[(i, r, j)] = seen[key]
                plan.units[(i, r, j)] = sub.n_units
                plan.images[(i, r, j)] = len(sub.rows)
    return plan


def summarise_curve(
    plan: CurvePlan,
    preds: Sequence[Any],
    groups: np.ndarray,
    *,
    n_classes: int,
    positive_index: int | None,
    seed: int,
    metric: str = "accuracy",
    n_boot: int = 1000,
) -> dict[str, Any]:
    """The ``learning_curve`` section of one cell: one point per fraction.

    ``preds[k]`` are the predictions of ``plan.fits[k]`` (FoldPrediction-like:
    ``test_index``, ``y_true``, ``y_pred``, ``score``). Each point stores its
    predictions per repeat, in the order of the cell's folds' ``test_index`` (the test
    folds are the same at every fraction, so the index is not stored again), so any
    metric can be recomputed.
    """
    groups = np.asarray(groups, dtype=object).astype(str)
    points = []
    for j, f in enumerate(plan.fractions):
        y_true, y_pred, scores, units, per_repeat, repeat_values = [], [], [], [], [], []
        for r in range(plan.repeats):
            parts = [preds[plan.where[(i, r, j)]] for i in range(plan.n_folds)]
            idx = np.concatenate([np.asarray(p.test_index) for p in parts])
            yt = np.concatenate([np.asarray(p.y_true) for p in parts])
            yp = np.concatenate([np.asarray(p.y_pred) for p in parts])
            sc = (
                None
                if any(p.score is None for p in parts)
                else np.concatenate([np.asarray(p.score, dtype=float) for p in parts])
            )
            one = unit_summary(
                yt,
                yp,
                sc,
                groups[idx],
                n_classes=n_classes,
                positive_index=positive_index,
                seed=seed,
                n_boot=0,
            )
            repeat_values.append(one["pooled"][metric])
            y_true.append(yt)
            y_pred.append(yp)
            scores.append(sc)
            units.append(groups[idx])
            per_repeat.append(yp.tolist())
        score_all = None if any(s is None for s in scores) else np.concatenate(scores)
        summary = unit_summary(
            np.concatenate(y_true),
            np.concatenate(y_pred),
            score_all,
            np.concatenate(units),
            n_classes=n_classes,
            positive_index=positive_index,
            seed=seed,
            n_boot=n_boot,
        )
        n_units = [plan.units[(i, r, j)] for i in range(plan.n_folds) for r in range(plan.repeats)]
        n_images = [
            plan.images[(i, r, j)] for i in range(plan.n_folds) for r in range(plan.repeats)
        ]
        values = np.asarray(repeat_values, dtype=float)
        points.append(
            {
                "fraction": f,
                "n_units": float(np.mean(n_units)),
                "n_units_range": [int(min(n_units)), int(max(n_units))],
                "n_images": float(np.mean(n_images)),
                "score": summary["pooled"][metric],
                "ci": summary["ci"][metric],
                "repeat_scores": values.tolist(),
                "repeat_std": float(values.std(ddof=1)) if len(values) > 1 else None,
                "metrics": summary["pooled"],
                "test_units": summary["n_units"],
                "y_pred": per_repeat,
            }
        )
    return {
        "metric": metric,
        "fractions": plan.fractions,
        "repeats": plan.repeats,
        "folds": plan.n_folds,
        "fits": len(plan.fits),
        "ci_method": f"cluster bootstrap over test units, {n_boot} replicates, seed {seed}",
        "points": points,
    }
