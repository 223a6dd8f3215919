"""Tuned cells as typed records, and the report's tables (outer score, choice per fold)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.metrics import compute_metrics

if TYPE_CHECKING:
    from bench.protocols.base import Protocol
    from bench.protocols.context import RunContext
    from bench.protocols.tuned.nested import NestedResult
    from bench.records import CellRecord, RunRecord
    from bench.render import Table
    from bench.suite import Cell


def _pooled_metric(folds: list[Any], metric: str, n_classes: int, positive: int | None) -> float:
    yt = np.concatenate([np.asarray(f.y_true) for f in folds])
    yp = np.concatenate([np.asarray(f.y_pred) for f in folds])
    scores = [f.score for f in folds]
    sc = None if any(s is None for s in scores) else np.concatenate([np.asarray(s) for s in scores])
    return float(compute_metrics(yt, yp, sc, n_classes=n_classes, positive_index=positive)[metric])


def tuning_section(
    result: NestedResult, table: Mapping[str, Any], n_classes: int, positive: int | None
) -> dict[str, Any]:
    """The ``tuning`` section: the grid, each fold's choice, its stability, the optimism."""
    metric = table["metric"]
    pts = result.points
    labels = [p.label for p in pts]
    per_fold = []
    for i, (best, means) in enumerate(zip(result.chosen, result.inner, strict=True)):
        per_fold.append(
            {
                "fold": i,
                "chosen": dict(pts[best].params),
                "label": labels[best],
                "inner_score": means[best],
                "inner_scores": dict(zip(labels, means, strict=True)),
                "outer_score": _pooled_metric([result.outer[i]], metric, n_classes, positive),
            }
        )
    counts = Counter(labels[b] for b in result.chosen)
    modal, n_modal = counts.most_common(1)[0]
    by_candidate = [
        {
            "label": labels[c],
            "params": dict(pts[c].params),
            "outer_score": _pooled_metric(result.by_candidate[c], metric, n_classes, positive),
        }
        for c in range(len(pts))
    ]
    nested = _pooled_metric(result.outer, metric, n_classes, positive)
    best = max(
        by_candidate, key=lambda d: -math.inf if math.isnan(d["outer_score"]) else d["outer_score"]
    )
    return {
        "grid": {k: list(v) for k, v in table["grid"][pts[0].classifier].items()},
        "metric": metric,
        "outer_folds": len(result.outer),
        "inner_folds": int(table["inner_folds"]),
        "per_fold": per_fold,
        "stability": {
            "modal": modal,
            "modal_share": n_modal / len(result.chosen),
            "distinct": len(counts),
            "counts": dict(counts),
        },
        "nested_score": nested,
        "by_candidate": by_candidate,
        "best_on_test": {"label": best["label"], "outer_score": best["outer_score"]},
        "optimism": best["outer_score"] - nested if math.isfinite(best["outer_score"]) else None,
        "note": (
            "by_candidate and best_on_test are chosen by looking at the outer test folds: "
            "not an estimate, shown only to measure how optimistic that would be"
        ),
        "fits": len(pts) * (len(result.outer) + sum(table["inner_folds"] for _ in result.outer)),
        "from_cache": result.from_cache,
    }


def tuned_cell(
    ctx: RunContext, table: Mapping[str, Any], cell: Cell, result: NestedResult
) -> CellRecord:
    """One (backbone, tuned classifier) cell: outer folds with the chosen settings."""
    from bench.metrics import summarize
    from bench.protocols.cells import base_cell, fold_records

    imageset = ctx.data.imageset
    n_classes, positive = len(imageset.classes), imageset.positive_index
    samples = ctx.samples(table["augment"], cell.seed)
    _, split = ctx.splits(samples, table, cell.seed)
    spec = ctx.registry.classifier(cell.classifier)
    rec = base_cell(
        ctx,
        cell,
        model="Model 1",
        label=spec.paper_label or spec.name,
        samples=samples,
        split=split,
        augmentation=ctx.augmentation_info(table["augment"]),
        classifier_options=ctx.suite.classifier_options(cell.classifier),
    )
    rec.predictions_from_cache = result.from_cache
    rec.folds = fold_records(result.outer, n_classes, positive)
    rec.metrics = summarize(
        result.outer, n_classes=n_classes, positive_index=positive, seed=cell.seed
    )
    rec.sections["tuning"] = tuning_section(result, table, n_classes, positive)
    rec.status = "complete"
    return rec


def _pct(v: Any) -> str:
    return "-" if v is None or not math.isfinite(float(v)) else f"{100 * float(v):.1f}"


def summary_table(record: RunRecord, cells: list[CellRecord], protocol: Protocol) -> Table:
    """Per tuned method: the nested (honest) score, the choices, their stability, the optimism."""
    from bench.render import Table

    rows, data = [], []
    for cell in cells:
        t = cell.sections.get("tuning") or {}
        st = t.get("stability") or {}
        ci = (cell.metrics.get("ci") or {}).get(t.get("metric", "accuracy")) or [None, None]
        score = _pct(t.get("nested_score"))
        if None not in ci:
            score += f" [{_pct(ci[0])}, {_pct(ci[1])}]"
        chosen = ", ".join(
            f"{k} x{v}" for k, v in sorted((st.get("counts") or {}).items(), key=lambda kv: -kv[1])
        )
        best = t.get("best_on_test") or {}
        rows.append(
            [
                protocol.row_label(cell),
                t.get("metric", "?"),
                score,
                chosen,
                f"{100 * st.get('modal_share', float('nan')):.0f}% ({st.get('distinct', '?')} distinct)",
                f"{_pct(best.get('outer_score'))} ({best.get('label', '?')})",
                _pct(t.get("optimism")),
            ]
        )
        data.append({"cell": cell.id, **{k: v for k, v in t.items() if k != "per_fold"}})
    return Table(
        key="tuned-summary",
        title=f"Tuned by nested CV - {record.dataset.get('name', '?')}",
        headers=[
            "Method",
            "Metric",
            "Nested score (%) [95% CI]",
            "Chosen (folds)",
            "Stability (modal share)",
            "Best single setting on test (%)",
            "Optimism (pp)",
        ],
        rows=rows,
        data=data,
        caption=(
            f"Run {record.run_id}. Each outer grouped fold's setting is chosen by an inner grouped CV "
            "of its training part only; the nested score pools the outer test predictions. "
            "'Best single setting on test' picks the setting by its outer score - not an estimate, "
            "shown to measure the optimism of tuning on the test folds."
        ),
    )


def choices_table(record: RunRecord, cells: list[CellRecord], protocol: Protocol) -> Table:
    """One row per (method, outer fold): the chosen setting, its inner and outer score."""
    from bench.render import Table

    rows, data, groups = [], [], []
    for cell in cells:
        t = cell.sections.get("tuning") or {}
        for f in t.get("per_fold") or []:
            others = ", ".join(f"{k}: {_pct(v)}" for k, v in f["inner_scores"].items())
            rows.append(
                [str(f["fold"]), f["label"], _pct(f["inner_score"]), _pct(f["outer_score"]), others]
            )
            groups.append(protocol.row_label(cell))
            data.append({"cell": cell.id, **f})
    return Table(
        key="tuned-folds",
        title="Tuned settings per outer fold",
        headers=[
            "Outer fold",
            "Chosen",
            "Inner score (%)",
            "Outer score (%)",
            "Inner scores of the grid (%)",
        ],
        rows=rows,
        data=data,
        caption="Inner score: mean over the inner grouped folds of the outer training part.",
        groups=groups,
    )
