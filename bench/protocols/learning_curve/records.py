"""Learning-curve cells as typed records, and the report's curve table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bench.crossval import FoldPrediction
from bench.protocols.learning_curve.curve import CurvePlan, summarise_curve

if TYPE_CHECKING:
    from bench.data.imageset import Samples
    from bench.protocols.base import Protocol
    from bench.protocols.context import RunContext
    from bench.records import CellRecord, RunRecord
    from bench.render import Table
    from bench.suite import Cell


def curve_cell(
    ctx: RunContext,
    table: Mapping[str, Any],
    cell: Cell,
    curve: CurvePlan,
    fits: Sequence[Any],
    samples: Samples,
    *,
    label: str,
    from_cache: bool | None,
    model2: bool,
) -> CellRecord:
    """One (backbone, method) cell: folds at the largest fraction, every point in a section."""
    from bench.metrics import summarize
    from bench.protocols.cells import base_cell, fold_records

    imageset = ctx.data.imageset
    n_classes, positive = len(imageset.classes), imageset.positive_index
    _, split = ctx.splits(samples, table, cell.seed)
    rec = base_cell(
        ctx,
        cell,
        model="Model 2" if model2 else "Model 1",
        label=label,
        samples=samples,
        split=split,
        augmentation=ctx.augmentation_info(
            table["augment"],
            table["settings"].get("augmentation", "premade") if model2 else "premade",
        ),
        classifier_options={} if model2 else ctx.suite.classifier_options(cell.classifier),
    )
    top = len(curve.fractions) - 1
    full = []
    for i in range(curve.n_folds):
        p = fits[curve.where[(i, 0, top)]]
        full.append(
            FoldPrediction(
                i,
                p.test_index,
                p.y_true,
                p.y_pred,
                p.score,
                float(getattr(p, "fit_s", getattr(p, "train_s", 0.0))),
            )
        )
    rec.predictions_from_cache = from_cache
    rec.folds = fold_records(full, n_classes, positive)
    rec.metrics = summarize(full, n_classes=n_classes, positive_index=positive, seed=cell.seed)
    section = summarise_curve(
        curve,
        fits,
        samples.groups,
        n_classes=n_classes,
        positive_index=positive,
        seed=cell.seed,
        metric=table["metric"],
        n_boot=int(table["n_boot"]),
    )
    section["units"] = "groups (patients where the dataset has them, else source images)"
    if model2:
        section["train_s"] = [round(float(f.train_s), 2) for f in fits]
    rec.sections["learning_curve"] = section
    rec.status = "complete"
    return rec


def _pct(v: Any) -> str:
    return "-" if v is None or not math.isfinite(float(v)) else f"{100 * float(v):.1f}"


def curve_table(record: RunRecord, cells: list[CellRecord], protocol: Protocol) -> Table:
    """One row per (method, fraction): training units, images, score [CI], spread over repeats."""
    from bench.render import Table

    rows, data, groups = [], [], []
    metric = "accuracy"
    for cell in cells:
        s = cell.sections.get("learning_curve") or {}
        metric = s.get("metric", metric)
        for pt in s.get("points", []):
            lo, hi = (pt.get("ci") or [None, None])[:2]
            score = _pct(pt.get("score"))
            if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
                score += f" [{_pct(lo)}, {_pct(hi)}]"
            rng = pt.get("n_units_range") or ["?", "?"]
            std = pt.get("repeat_std")
            rows.append(
                [
                    f"{pt['fraction']:.0%}",
                    f"{pt['n_units']:.0f} ({rng[0]}-{rng[1]})",
                    f"{pt['n_images']:.0f}",
                    score,
                    "-" if std is None else f"{100 * std:.1f}",
                ]
            )
            groups.append(protocol.row_label(cell).split(" (learning curve")[0])
            data.append(
                {
                    "cell": cell.id,
                    **{k: v for k, v in pt.items() if k not in ("y_pred", "test_index")},
                }
            )
    first = (cells[0].sections.get("learning_curve") or {}) if cells else {}
    return Table(
        key="learning-curve",
        title=f"Learning curve - {record.dataset.get('name', '?')}",
        headers=[
            "Fraction",
            "Training units (range over folds)",
            "Training samples",
            f"{metric} (%) [95% CI]",
            "SD over repeats",
        ],
        rows=rows,
        data=data,
        caption=(
            f"Run {record.run_id}. Grouped {first.get('folds', '?')}-fold CV; each training fold "
            f"subsampled to nested, stratified sets of whole units, {first.get('repeats', '?')} "
            "repeat(s); the test folds are the same at every fraction. Score: all test predictions "
            "of all repeats pooled; CI: cluster bootstrap over test units."
        ),
        groups=groups,
    )
