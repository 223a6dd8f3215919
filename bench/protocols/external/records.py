"""External cells as typed records, and the report's drop table (external vs in-domain)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.cluster_stats import unit_summary
from bench.records import SplitInfo

if TYPE_CHECKING:
    from bench.data.imageset import Samples
    from bench.protocols.base import Protocol
    from bench.protocols.context import RunContext
    from bench.protocols.external.testsets import TestSet
    from bench.records import CellRecord, RunRecord
    from bench.render import Table
    from bench.suite import Cell

DROP_METRICS = ("accuracy", "balanced_accuracy", "roc_auc")


def _pooled(folds: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    idx = np.concatenate([np.asarray(f.test_index, dtype=np.int64) for f in folds])
    yt = np.concatenate([np.asarray(f.y_true) for f in folds])
    yp = np.concatenate([np.asarray(f.y_pred) for f in folds])
    scores = [f.score for f in folds]
    sc = None
    if all(s is not None and np.size(s) for s in scores):
        sc = np.concatenate([np.asarray(s, dtype=float) for s in scores])
    return yt, yp, sc, idx


def external_cell(
    ctx: RunContext,
    table: Mapping[str, Any],
    cell: Cell,
    test: TestSet,
    ext: Any,
    in_domain: Sequence[Any] | None,
    samples: Samples,
    *,
    label: str,
    model2: bool,
    from_cache: bool | None,
    training: dict[str, Any] | None = None,
) -> CellRecord:
    """One (backbone, method, test set) cell with its ``external`` section."""
    from bench.data.imageset import Samples as SamplesType
    from bench.metrics import summarize
    from bench.protocols.cells import base_cell, fold_records

    train = ctx.data.imageset
    n_classes, positive = len(train.classes), train.positive_index
    seed, n_boot = cell.seed, int(table["n_boot"])
    rec = base_cell(
        ctx,
        cell,
        model="External",
        label=label,
        samples=SamplesType.originals(test.imageset),
        split=SplitInfo(f"external:{test.name}"),
        augmentation=ctx.augmentation_info(
            table["augment"],
            (table["settings"].get("augmentation", "premade") if model2 else "premade"),
        ),
        classifier_options={} if model2 else ctx.suite.classifier_options(cell.classifier),
    )
    rec.predictions_from_cache = from_cache
    rec.folds = fold_records([ext], n_classes, positive)
    rec.metrics = summarize([ext], n_classes=n_classes, positive_index=positive, seed=seed)
    yt, yp, sc, _ = _pooled([ext])
    external = unit_summary(
        yt,
        yp,
        sc,
        test.units[np.asarray(ext.test_index)],
        n_classes=n_classes,
        positive_index=positive,
        seed=seed,
        n_boot=n_boot,
    )
    rec.metrics["ci"] = external["ci"]
    rec.metrics["ci_method"] = external["ci_method"]
    section: dict[str, Any] = {
        "test": test.info,
        "train": {
            "name": ctx.data.info.get("name"),
            "fingerprint": ctx.data.fingerprint,
            "n_images": len(train),
            "n_samples": len(samples),
            "n_units": len(set(train.groups)),
        },
        "external": external,
        "in_domain": None,
        "drop": None,
    }
    if in_domain:
        iyt, iyp, isc, idx = _pooled(in_domain)
        units = np.asarray(samples.groups, dtype=object)[idx]
        inside = unit_summary(
            iyt,
            iyp,
            isc,
            units,
            n_classes=n_classes,
            positive_index=positive,
            seed=seed,
            n_boot=n_boot,
        )
        inside["split"] = f"grouped {table['folds']}-fold"
        section["in_domain"] = inside
        section["drop"] = {
            k: _minus(inside["pooled"].get(k), external["pooled"].get(k))
            for k in external["pooled"]
        }
    rec.sections["external"] = section
    if training is not None:
        rec.sections["training"] = training
    rec.status = "complete"
    return rec


def _minus(a: Any, b: Any) -> float | None:
    if a is None or b is None:
        return None
    a, b = float(a), float(b)
    return a - b if math.isfinite(a) and math.isfinite(b) else None


def _fmt(value: Any, ci: Any = None, percent: bool = True) -> str:
    if value is None or not math.isfinite(float(value)):
        return "-"
    scale, digits = (100.0, 1) if percent else (1.0, 3)
    text = f"{float(value) * scale:.{digits}f}"
    if ci and len(ci) == 2 and all(c is not None and math.isfinite(float(c)) for c in ci):
        text += f" [{float(ci[0]) * scale:.{digits}f}, {float(ci[1]) * scale:.{digits}f}]"
    return text


def drop_table(record: RunRecord, cells: list[CellRecord], protocol: Protocol) -> Table:
    """External score beside the in-domain grouped CV of the same method, and the drop."""
    from bench.render import Table

    headers = ["Method", "Test set (images / units)"]
    for m in DROP_METRICS:
        name = {"accuracy": "Acc.", "balanced_accuracy": "Bal. acc.", "roc_auc": "AUC"}[m]
        headers += [f"{name} external", f"{name} in-domain", f"{name} drop"]
    rows, data = [], []
    for cell in cells:
        s = cell.sections.get("external") or {}
        ext, inside, drop = s.get("external") or {}, s.get("in_domain") or {}, s.get("drop") or {}
        test = s.get("test") or {}
        row = [
            protocol.row_label(cell),
            f"{test.get('name', '?')} ({test.get('n_images', '?')} / {test.get('n_units', '?')})",
        ]
        for m in DROP_METRICS:
            pct = m != "roc_auc"
            row += [
                _fmt((ext.get("pooled") or {}).get(m), (ext.get("ci") or {}).get(m), pct),
                _fmt((inside.get("pooled") or {}).get(m), (inside.get("ci") or {}).get(m), pct),
                _fmt(drop.get(m), None, pct),
            ]
        rows.append(row)
        data.append(
            {
                "cell": cell.id,
                "method": protocol.row_label(cell),
                "test": test.get("name"),
                "external": ext.get("pooled"),
                "external_ci": ext.get("ci"),
                "in_domain": inside.get("pooled"),
                "in_domain_ci": inside.get("ci"),
                "drop": drop,
                "units": {"external": ext.get("n_units"), "in_domain": inside.get("n_units")},
            }
        )
    train = record.dataset.get("name", "?")
    return Table(
        key="external-drop",
        title=f"External validation - trained on {train}",
        headers=headers,
        rows=rows,
        data=data,
        caption=(
            f"Run {record.run_id}. External: trained on all of {train}, tested on the named set; "
            "in-domain: grouped k-fold CV on the training set; drop = in-domain - external. "
            "Values in % (AUC as a fraction) [95% CI: cluster bootstrap over independent units - "
            "patients where the dataset has them, else source images]."
        ),
        footnotes=[
            "A test set's class balance differs from the training set's: compare balanced accuracy "
            "and AUC as well as accuracy."
        ],
    )
