"""The acquisition shortcut test: can the label be predicted without looking at a cell?

Acquisition properties (:mod:`bench.audit.properties`) become a numeric table
(categorical ones one-hot), in *families*. A small decision tree (the registry's
``dt``, at most 20 splits) predicts the label under grouped k-fold CV: once from
the **file properties** (resolution, file size, format, JPEG tables, EXIF), once
from everything (adding **pixel statistics**: colour and blank borders), and once
per family, to name the most predictive properties.

The verdict is computed from the numbers (see :func:`verdict`): the lower end of
the AUC's 95% cluster-bootstrap interval against two thresholds.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.audit.evaluation import TestResult, grouped_test

FAIL_AUC = 0.90  # the AUC's CI lower bound at or above this: the shortcut alone does the job
WARN_AUC = 0.60  # above this: clearly better than chance (0.5)
CLASSIFIER = "dt"
MAX_LEVELS = 12  # a categorical property keeps its most common values, the rest is "other"

FAMILIES: dict[str, tuple[str, ...]] = {
    "resolution": ("width", "height", "aspect", "pixels"),
    "file size": ("file_size", "bytes_per_pixel"),
    "format": ("format", "mode", "progressive", "icc_profile", "orientation"),
    "JPEG quality/tables": ("jpeg_quality", "jpeg_tables", "jpeg_subsampling"),
    "EXIF": ("has_exif", "exif_make", "exif_model", "exif_software", "dpi"),
    "colour": ("mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b"),
    "blank borders": ("border_top", "border_bottom", "border_left", "border_right"),
}
FILE_FAMILIES = ("resolution", "file size", "format", "JPEG quality/tables", "EXIF")
PIXEL_FAMILIES = ("colour", "blank borders")
CATEGORICAL = frozenset(
    {"format", "mode", "jpeg_tables", "jpeg_subsampling", "exif_make", "exif_model",
     "exif_software"}
)  # fmt: skip


def derived(row: dict[str, Any]) -> dict[str, Any]:
    """A property row plus the derived columns (aspect, pixels, bytes per pixel)."""
    w, h = row["width"], row["height"]
    return {
        **row,
        "aspect": w / h if h else 0.0,
        "pixels": float(w * h),
        "bytes_per_pixel": row["file_size"] / max(1, w * h),
    }


def _number(v: Any) -> float:
    if v is None:
        return -1.0
    return float(v)


def property_matrix(
    rows: Sequence[dict[str, Any]], families: Sequence[str]
) -> tuple[np.ndarray, list[str]]:
    """``(X, column names)`` of the given families; categoricals one-hot (``name=value``)."""
    full = [derived(r) for r in rows]
    columns: list[np.ndarray] = []
    names: list[str] = []
    for fam in families:
        for prop in FAMILIES[fam]:
            values = [r.get(prop) for r in full]
            if prop in CATEGORICAL:
                common = [v for v, _ in Counter(values).most_common(MAX_LEVELS)]
                if len(common) < 2:
                    continue  # one value for every image: carries nothing
                for level in common:
                    columns.append(np.array([v == level for v in values], dtype=np.float64))
                    names.append(f"{prop}={level}")
            else:
                col = np.array([_number(v) for v in values], dtype=np.float64)
                if np.ptp(col) == 0:
                    continue
                columns.append(col)
                names.append(prop)
    if not columns:
        return np.zeros((len(rows), 0)), []
    return np.stack(columns, axis=1), names


def predict_from(
    rows: Sequence[dict[str, Any]],
    labels: np.ndarray,
    groups: Sequence[str],
    families: Sequence[str],
    *,
    folds: int,
    seed: int,
) -> TestResult | None:
    """Grouped-CV test of predicting ``labels`` from the ``families``' properties.

    A table whose columns are all constant carries no information: chance, no fit.
    """
    X, names = property_matrix(rows, families)
    if X.shape[1] == 0:
        return None
    res = grouped_test(X, labels, groups, classifier=CLASSIFIER, folds=folds, seed=seed)
    if res is not None:
        res.extra["columns"] = len(names)
    return res


@dataclass
class ShortcutResult:
    """The acquisition test: file properties, everything, and per family."""

    file_only: TestResult | None
    everything: TestResult | None
    per_family: list[tuple[str, TestResult]]
    level: str
    verdict: str
    separating: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "verdict": self.verdict,
            "file_properties": None if self.file_only is None else self.file_only.to_json(),
            "all_properties": None if self.everything is None else self.everything.to_json(),
            "per_family": [{"family": f, **r.to_json()} for f, r in self.per_family],
            "differences": self.separating,
        }


def _strength(res: TestResult | None) -> float:
    return -math.inf if res is None or math.isnan(res.strength) else res.strength


def class_differences(
    rows: Sequence[dict[str, Any]], labels: np.ndarray, classes: Sequence[str], family: str
) -> list[str]:
    """Plain-words per-class values of one family (the most common value, or the median)."""
    out = []
    full = [derived(r) for r in rows]
    for prop in FAMILIES[family]:
        per_class = []
        for k, cls in enumerate(classes):
            vals = [full[i].get(prop) for i in np.flatnonzero(labels == k)]
            if not vals:
                continue
            if prop in CATEGORICAL or isinstance(vals[0], bool | str) or vals[0] is None:
                v, n = Counter(vals).most_common(1)[0]
                per_class.append(f"{cls}: {v} ({100 * n / len(vals):.0f}%)")
            else:
                per_class.append(f"{cls}: median {np.median(np.asarray(vals, float)):.4g}")
        if len({p.split(": ", 1)[1] for p in per_class}) > 1:
            out.append(f"{prop} -- " + "; ".join(per_class))
    return out[:4]


def verdict(
    file_only: TestResult | None,
    everything: TestResult | None,
    per_family: list[tuple[str, TestResult]],
    what: str = "labels",
) -> tuple[str, str]:
    """``(level, plain words)`` from the numbers: FAIL/WARN thresholds on the AUC's CI low end."""
    top = per_family[0] if per_family else None
    top_words = f"; most predictive: {top[0]} ({top[1].describe()})" if top else ""
    s_file, s_all = _strength(file_only), _strength(everything)
    if file_only is not None and s_file >= FAIL_AUC:
        ba = 100 * file_only.balanced_accuracy.value
        return "fail", (
            f"{what} are predictable from file properties alone ({file_only.describe()}): "
            f"a model can score {ba:.0f}% balanced accuracy without looking at a cell{top_words}"
        )
    if everything is not None and s_all >= FAIL_AUC:
        return "warn", (
            f"{what} are predictable from image statistics ({everything.describe()}) but less "
            "so from file properties; colour and borders come from the stain and camera (a "
            f"shortcut) or from the cells themselves, and this test cannot tell which{top_words}"
        )
    if max(s_file, s_all) > WARN_AUC:
        best = file_only if s_file >= s_all else everything
        assert best is not None
        return "warn", (
            f"acquisition properties carry some information about the {what} "
            f"({best.describe()}); check that a model is not using it{top_words}"
        )
    if file_only is None and everything is None:
        return "ok", "not enough groups per class to test (or every property is constant)"
    best = everything if everything is not None else file_only
    assert best is not None
    return "ok", (
        f"no evidence that acquisition properties predict the {what} ({best.describe()}; "
        f"chance is AUC 0.50){top_words}"
    )


def shortcut_test(
    rows: Sequence[dict[str, Any]],
    labels: np.ndarray,
    groups: Sequence[str],
    classes: Sequence[str],
    *,
    folds: int = 5,
    seed: int = 0,
    what: str = "labels",
) -> ShortcutResult:
    """Run the acquisition shortcut test on aligned property rows, labels and groups."""
    labels = np.asarray(labels, dtype=np.int64)
    file_only = predict_from(rows, labels, groups, FILE_FAMILIES, folds=folds, seed=seed)
    everything = predict_from(
        rows, labels, groups, FILE_FAMILIES + PIXEL_FAMILIES, folds=folds, seed=seed
    )
    per_family = []
    for fam in FAMILIES:
        res = predict_from(rows, labels, groups, (fam,), folds=folds, seed=seed)
        if res is not None:
            per_family.append((fam, res))
    per_family.sort(key=lambda fr: -_strength(fr[1]))
    level, words = verdict(file_only, everything, per_family, what)
    diffs = []
    for fam, res in per_family[:2]:
        if _strength(res) > WARN_AUC:
            diffs += class_differences(rows, labels, classes, fam)
    return ShortcutResult(file_only, everything, per_family, level, words, diffs)
