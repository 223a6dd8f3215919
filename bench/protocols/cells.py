"""Building blocks for protocols' cell records: the standard fields, folds, saved models."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.records import CellRecord, FoldRecord, SampleRef, SplitInfo

if TYPE_CHECKING:
    from bench.data.imageset import Samples
    from bench.protocols.context import RunContext
    from bench.suite import Cell


def base_cell(
    ctx: RunContext,
    cell: Cell,
    *,
    model: str,
    label: str,
    samples: Samples,
    split: SplitInfo,
    augmentation: dict[str, Any] | None,
    classifier_options: dict[str, Any] | None = None,
    backbone_info: dict[str, Any] | None = None,
) -> CellRecord:
    """A cell record with every standard field filled in (status ``running``, no folds yet)."""
    imageset = ctx.data.imageset
    if backbone_info is None:
        backbone_info = ctx.backbone(cell.backbone).describe()
    return CellRecord(
        id=cell.id,
        status="running",
        protocol=cell.kind,
        model=model,
        backbone=cell.backbone,
        backbone_info=backbone_info,
        classifier=cell.classifier,
        classifier_options=dict(classifier_options or {}),
        label=label,
        seed=cell.seed,
        split=split,
        augmentation=augmentation,
        classes=list(imageset.classes),
        positive=imageset.positive,
        samples=SampleRef(samples.source.tolist(), ctx.transforms_ref(samples)),
    )


def fold_records(
    preds: Sequence[Any], n_classes: int, positive_index: int | None
) -> list[FoldRecord]:
    """Typed fold records from fold predictions (``fold``, ``test_index``, ``y_true``, ...)."""
    from bench.metrics import compute_metrics

    folds = []
    for p in preds:
        score = None if p.score is None else np.asarray(p.score)
        folds.append(
            FoldRecord(
                fold=int(p.fold),
                test_index=np.asarray(p.test_index).tolist(),
                y_true=np.asarray(p.y_true).tolist(),
                y_pred=np.asarray(p.y_pred).tolist(),
                score=None if score is None else np.round(score, 4).tolist(),
                metrics=compute_metrics(
                    p.y_true, p.y_pred, score, n_classes=n_classes, positive_index=positive_index
                ),
                fit_s=round(float(getattr(p, "fit_s", getattr(p, "train_s", 0.0))), 4),
            )
        )
    return folds


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_entry(ctx: RunContext, path: Path, fold: int | None) -> dict[str, Any]:
    """The record's entry for a saved model file: path (relative to results_dir), digest, fold."""
    try:
        rel = Path(path).resolve().relative_to(Path(ctx.results_dir).resolve()).as_posix()
    except ValueError:
        rel = Path(path).as_posix()
    return {"path": rel, "sha256": file_sha256(Path(path)), "fold": fold}


def safe_name(name: str) -> str:
    """A backbone or classifier name usable in a file name (``timm/resnet18`` -> ``timm_resnet18``)."""
    return name.replace("/", "_")
