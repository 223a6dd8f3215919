"""Publication figures from a result record (matplotlib; PNG, SVG or PDF).

``write_figures(record, out_dir, fmt="png", dpi=300)`` writes, under
``out_dir/<run id>/``: ``estimates.<fmt>`` (every method's estimates with 95%
CIs as dots and whiskers), and per method ``<method>-<split>-confusion``,
``-roc`` and ``-pr`` (from the stored scores: pooled, and each fold as a thin
line) and, for fine-tuned methods, ``-training``. Titles carry no run id (the
folder does); colours are the Okabe-Ito palette; LEAKY methods are marked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.figures.charts import confusion_figure, point_intervals, roc_pr_figures
from bench.figures.style import DEFAULT_DPI, FORMATS, check_format, slug
from bench.figures.training import training_curves
from bench.records import RunRecord
from bench.report import as_run_record, methods

__all__ = [
    "DEFAULT_DPI",
    "FORMATS",
    "Figure",
    "check_format",
    "figure_set",
    "slug",
    "write_figures",
]


@dataclass(frozen=True)
class Figure:
    """One written figure and the caption a report shows under it."""

    path: Path
    kind: str  # estimates | confusion | roc | pr | training
    caption: str


def figure_set(
    record: RunRecord | dict[str, Any],
    out_dir: Path,
    fmt: str = "png",
    dpi: int = DEFAULT_DPI,
) -> list[Figure]:
    """Write every figure of ``record``; return them with their captions."""
    check_format(fmt, dpi)
    record = as_run_record(record)
    run = record.run_id or "run"
    folder = Path(out_dir) / (run if re.fullmatch(r"[A-Za-z0-9._-]+", run) else slug(run))
    ms = methods(record)
    if not ms:
        return []
    where = f"{record.dataset_name}, run {record.run_id}"
    out = [
        Figure(
            point_intervals(record, ms, folder / f"estimates.{fmt}", dpi=dpi),
            "estimates",
            f"Estimates with 95% confidence intervals ({where}); hollow vermilion: LEAKY split.",
        )
    ]
    seen: set[str] = set()
    for m in ms:
        stem = slug(f"{m.backbone} {m.method} {m.split_text}")
        while stem in seen:  # same label and split, other augmentation
            stem += "-b"
        seen.add(stem)
        label = f"{m.name}, {m.split_text} ({where})"
        path = confusion_figure(m, folder / f"{stem}-confusion.{fmt}", dpi)
        out.append(Figure(path, "confusion", f"Confusion matrix, counts and row %: {label}."))
        curves = roc_pr_figures(m, folder / f"{stem}-roc.{fmt}", folder / f"{stem}-pr.{fmt}", dpi)
        for p, kind in zip(curves, ("roc", "pr"), strict=False):
            name = "ROC curve" if kind == "roc" else "Precision-recall curve"
            out.append(Figure(p, kind, f"{name}, pooled and per fold: {label}."))
        curve = training_curves(m, folder / f"{stem}-training.{fmt}", dpi)
        if curve:
            out.append(Figure(curve, "training", f"Fine-tuning loss and accuracy: {label}."))
    return out


def write_figures(
    record: RunRecord | dict[str, Any],
    out_dir: Path,
    fmt: str = "png",
    dpi: int = DEFAULT_DPI,
) -> list[Path]:
    """All figures for one record under ``out_dir/<run id>/``; returns the written paths."""
    return [f.path for f in figure_set(record, out_dir, fmt, dpi)]
