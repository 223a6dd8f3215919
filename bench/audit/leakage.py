"""The leakage delta: a quick Model 1 under the paper's leaky split and under a grouped split.

One backbone, one linear classifier (the registry's ``logreg``), cached features of
the samples a suite would see (the originals, or the originals plus their
augmented copies when an augmentation scheme is given). The same samples are
cross-validated twice: ``paper-leaky`` (stratified k-fold over samples, ignoring
groups -- the paper's augment-then-split order) and ``grouped-kfold`` (no group on
both sides). The difference in balanced accuracy, with a paired cluster-bootstrap
CI over groups, is how much the leaky split inflates the score on this data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.audit.evaluation import (
    N_BOOT,
    Estimate,
    Pooled,
    balanced_accuracy,
    cluster_weights,
    pooled_predictions,
    usable_folds,
)
from bench.stats import percentile_interval

LINEAR = "logreg"
FAIL_DELTA = 0.05  # CI low end of the inflation (balanced accuracy) at or above 5 points
WARN_DELTA = 0.005  # above half a point


@dataclass
class LeakageResult:
    """Balanced accuracy leaky vs grouped, and the difference (all with 95% CIs)."""

    leaky: Estimate
    grouped: Estimate
    delta: Estimate
    n_samples: int
    n_units: int
    folds: int
    classifier: str
    backbone: str
    augmentation: str
    level: str
    verdict: str

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "verdict": self.verdict,
            "leaky_balanced_accuracy": self.leaky.to_json(),
            "grouped_balanced_accuracy": self.grouped.to_json(),
            "delta": self.delta.to_json(),
            "n_samples": self.n_samples,
            "n_units": self.n_units,
            "folds": self.folds,
            "classifier": self.classifier,
            "backbone": self.backbone,
            "augmentation": self.augmentation,
        }


def _paired(leaky: Pooled, grouped: Pooled, n_boot: int, seed: int) -> list[Estimate]:
    k = leaky.n_classes

    def ba(p: Pooled, w: np.ndarray | None) -> float:
        return balanced_accuracy(p.y_true, p.y_pred, k, w)

    reps = np.array(
        [[ba(leaky, w), ba(grouped, w)] for w in cluster_weights(grouped.groups, n_boot, seed)]
    )
    values = [ba(leaky, None), ba(grouped, None)]
    out = [Estimate(v, *percentile_interval(reps[:, c])) for c, v in enumerate(values)]
    out.append(Estimate(values[0] - values[1], *percentile_interval(reps[:, 0] - reps[:, 1])))
    return out


def _verdict(delta: Estimate, augmentation: str, one_per_group: bool) -> tuple[str, str]:
    pts = (
        f"{100 * delta.value:+.1f} points [{100 * delta.low:+.1f}, {100 * delta.high:+.1f}] "
        "of balanced accuracy"
    )
    if not math.isnan(delta.low) and delta.low >= FAIL_DELTA:
        return "fail", (
            f"the paper's leaky split inflates the score by {pts}: copies of one "
            "image (or patient) on both sides of the split; report grouped splits only"
        )
    if not math.isnan(delta.low) and delta.low > WARN_DELTA:
        return "warn", f"the leaky split inflates the score by {pts}; use grouped splits"
    note = ""
    if augmentation == "none" and one_per_group:
        note = (
            " (every group is one image and nothing is augmented, so the two splits differ "
            "only by chance here; pass --augment loey2020 to measure the paper's order)"
        )
    return "ok", f"no measurable inflation from the leaky split: {pts}{note}"


def leakage_delta(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    backbone: str,
    augmentation: str = "none",
    folds: int = 5,
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> LeakageResult | None:
    """Leaky vs grouped k-fold of :data:`LINEAR` on ``features`` (None: too few groups)."""
    y = np.asarray(labels, dtype=np.int64)
    g = np.asarray(groups, dtype=str)
    k = usable_folds(y, g, folds)
    if k == 0 or np.bincount(y).min() < k:
        return None
    n_classes = int(y.max() + 1)
    common = dict(classifier=LINEAR, folds=k, seed=seed, n_classes=n_classes)
    leaky = pooled_predictions(features, y, g, split="paper-leaky", **common)
    grouped = pooled_predictions(features, y, g, split="grouped-kfold", **common)
    est_leaky, est_grouped, delta = _paired(leaky, grouped, n_boot, seed)
    n_units = len(set(g.tolist()))
    level, words = _verdict(delta, augmentation, n_units == len(g))
    return LeakageResult(
        est_leaky, est_grouped, delta, len(y), n_units, k, LINEAR, backbone, augmentation,
        level, words,
    )  # fmt: skip
