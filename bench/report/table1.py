"""Table 1 (per-method metrics, as in the paper) and its per-class companion, from typed records.

Rows are *methods*: cells of one record that share protocol, backbone, classifier
and split, aggregated over seeds. A single seed shows the pooled metric with its
stored 95% CI; several seeds show the mean over seeds with a t-interval across
seeds. Cells of a leaky split are marked LEAKY everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bench.errors import UserError
from bench.records import RunRecord
from bench.render import Table
from bench.report.estimates import (
    FRACTION_METRICS,
    LEAKY_NOTE,
    METRIC_NAMES,
    NOT_PRETRAINED_NOTE,
    PAPER_METRICS,
    Estimate,
    combine,
    confusion,
    per_class_counts,
)
from bench.report.methods import Method, as_run_record, methods


def _caption(record: RunRecord, ms: list[Method]) -> str:
    ds = record.dataset
    parts = [f"Dataset {ds.get('name', '?')} (n={ds.get('n_images', '?')} images"]
    counts = sorted({m.n_evaluated() for m in ms} - {0, None})
    if counts and counts != [ds.get("n_images")]:
        shown = (
            " to ".join(str(n) for n in (counts[0], counts[-1]) if n)
            if len(counts) > 1
            else str(counts[0])
        )
        parts[-1] += f", {shown} test predictions per method"
    parts[-1] += ")"
    if ds.get("positive") and len(ds.get("classes") or []) <= 2:
        parts.append(f"positive class {ds['positive']!r}")
    kinds = sorted({m.split_text for m in ms})
    parts.append(f"split: {', '.join(kinds) or '-'}")
    augs = sorted({aug_text(c.augmentation) for m in ms for c in m.cells})
    if augs and augs != ["none"]:
        parts.append(f"augmentation: {', '.join(augs)}")
    parts.append(f"seeds: {', '.join(str(s) for s in record.seeds) or '-'}")
    parts.append(f"run {record.run_id}")
    multi_seed = any(len(m.cells) > 1 for m in ms)
    how = "mean over seeds [95% t-interval]" if multi_seed else "pooled over folds [95% CI]"
    parts.append(f"values in %: {how}")
    if record.status == "incomplete":
        parts.append(f"INCOMPLETE run: {len(record.failed_cells())} cell(s) failed or missing")
    return "; ".join(parts) + "."


def aug_text(aug: dict[str, Any] | None) -> str:
    """``loey2020 x5``, or ``none``."""
    if not aug:
        return "none"
    copies = aug.get("copies")
    return f"{aug.get('scheme', '?')} x{copies}" if copies else str(aug.get("scheme", "?"))


def footnotes(ms: list[Method]) -> list[str]:
    notes = []
    if any(m.leaky for m in ms):
        notes.append(LEAKY_NOTE)
    if any(not m.pretrained for m in ms):
        notes.append(NOT_PRETRAINED_NOTE)
    return notes


def style(m: Method) -> str | None:
    return "bold red" if m.leaky else ("yellow" if not m.pretrained else None)


def table1(record: RunRecord | Mapping[str, Any], extra: Iterable[str] = ()) -> list[Table]:
    """Table 1 for one record; multi-class records add a per-class table."""
    record = as_run_record(record)
    ms = methods(record)
    if not ms:
        raise UserError(f"run {record.run_id}: no complete cells to report")
    multi = len(record.dataset.get("classes") or ms[0].cells[0].classes) > 2
    metrics = list(PAPER_METRICS) + [m for m in extra if m not in PAPER_METRICS]
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise UserError(f"unknown metric(s) {unknown}; choose from {', '.join(METRIC_NAMES)}")
    macro = {"precision", "recall", "specificity", "f1"} if multi else set()
    headers = ["Method", "Split"] + [
        METRIC_NAMES[m] + (" (macro)" if m in macro else "") for m in metrics
    ]
    rows, data = [], []
    for m in ms:
        ests = {name: m.estimate(name) for name in metrics}
        rows.append(
            [m.name, m.split_text]
            + [ests[name].fmt(percent=name not in FRACTION_METRICS) for name in metrics]
        )
        data.append(
            {
                "model": m.model,
                "method": m.name,
                "protocol": m.protocol,
                "backbone": m.backbone,
                "classifier": m.classifier,
                "split": m.split.to_json(),
                "leaky": m.leaky,
                "pretrained": m.pretrained,
                "seeds": m.seeds,
                "n": m.n_evaluated(),
                "metrics": {name: est.as_dict() for name, est in ests.items()},
            }
        )
    title = f"Table 1. Performance per method - {record.run_id}"
    tables = [
        Table(
            key="table1",
            title=title,
            headers=headers,
            rows=rows,
            data=data,
            caption=_caption(record, ms),
            footnotes=footnotes(ms),
            groups=[m.model for m in ms],
            styles=[style(m) for m in ms],
        )
    ]
    if multi:
        tables.append(per_class_table(record, ms))
    return tables


def per_class_table(record: RunRecord, ms: list[Method]) -> Table:
    """Per-class one-vs-rest precision, recall, specificity, F1 for every method."""
    names = ("precision", "recall", "specificity", "f1")
    rows, data, groups, styles = [], [], [], []
    for m in ms:
        classes = list(m.cells[0].classes)
        per_seed = [per_class_counts(confusion(c)) for c in m.cells]
        for i, cls in enumerate(classes):
            ests = {
                n: combine([Estimate(p[i][n], *p[i][f"{n}_ci"]) for p in per_seed]) for n in names
            }
            support = per_seed[0][i]["support"]
            rows.append([m.name, str(cls)] + [ests[n].fmt() for n in names] + [str(support)])
            data.append(
                {
                    "method": m.name,
                    "class": cls,
                    "support": support,
                    "metrics": {n: e.as_dict() for n, e in ests.items()},
                }
            )
            groups.append(m.model)
            styles.append(style(m))
    return Table(
        key="table1-per-class",
        title=f"Table 1b. Per-class metrics (one-vs-rest) - {record.run_id}",
        headers=["Method", "Class", "Precision", "Recall", "Specificity", "F1", "Support"],
        rows=rows,
        data=data,
        caption=_caption(record, ms),
        footnotes=footnotes(ms),
        groups=groups,
        styles=styles,
    )
