"""Checks of one stored cell: its classes, samples, folds, metrics and known sections.

:func:`check_cell` raises a :class:`~bench.records.cells.RecordError` naming the file and
the JSON path of the first malformed field (``cells[3].folds[0].y_pred[7]: expected a
class index (0..1), got str 'x'``). The metrics recomputed from the predictions are
compared with the stored ones in :mod:`bench.records.consistency`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.metrics import BINARY_KEYS, MULTICLASS_KEYS
from bench.records.cells import CellRecord, FoldRecord
from bench.records.fields import (
    At,
    expect,
    index_list,
    integer,
    is_finite_number,
    mapping,
    number,
    number_list,
    optional_number_list,
    shown,
    string_list,
    text,
)

CELL_STATUSES = ("complete", "failed", "running")
# metrics that are correlations (in [-1, 1]); every other known metric is a rate in [0, 1]
SIGNED_METRICS = ("mcc",)
RATE_METRICS = frozenset(BINARY_KEYS + MULTICLASS_KEYS) - set(SIGNED_METRICS)
HISTORY_COLUMNS = ("iteration", "epoch", "loss", "accuracy", "lr")


@dataclass(frozen=True)
class CellContext:
    """What a cell is checked against: the record's dataset size, classes and transforms."""

    n_images: int | None
    classes: list[str] | None
    transforms: Mapping[str, int]  # transform table entry -> samples it covers


def metric_bounds(name: str) -> tuple[float | None, float | None]:
    """The range of a stored metric: [-1, 1] for MCC, [0, 1] for rates, open otherwise."""
    if name in SIGNED_METRICS:
        return -1.0, 1.0
    if name in RATE_METRICS:
        return 0.0, 1.0
    return None, None


def check_metric_values(values: Any, at: At) -> Mapping[str, Any]:
    """A ``{metric: number | null}`` table (``pooled``, a fold's ``metrics``, ``mean``)."""
    mapping(values, at)
    for name, value in values.items():
        low, high = metric_bounds(name)
        number(value, at.key(name), low, high)
    return values


def check_spread(values: Any, at: At) -> None:
    """``std``: ``{metric: number >= 0 | null}``."""
    mapping(values, at)
    for name, value in values.items():
        number(value, at.key(name), 0.0, None)


def check_intervals(values: Any, at: At) -> None:
    """``ci``: ``{metric: [low, high]}`` of numbers (or nulls) in the metric's range."""
    mapping(values, at)
    for name, pair in values.items():
        where = at.key(name)
        expect(pair, list, where, "a [low, high] pair")
        if len(pair) != 2:
            raise where.error(f"expected a [low, high] pair, got {len(pair)} value(s)")
        low, high = metric_bounds(name)
        lo = number(pair[0], where.item(0), low, high)
        hi = number(pair[1], where.item(1), low, high)
        if lo is not None and hi is not None and lo > hi + 1e-9:
            raise where.error(f"low {lo!r} is above high {hi!r}")


def check_confusion(value: Any, at: At, k: int) -> None:
    """A k x k matrix of counts."""
    expect(value, list, at, f"a {k}x{k} matrix of counts")
    if len(value) != k:
        raise at.error(f"expected {k} rows (one per class), got {len(value)}")
    for i, row in enumerate(value):
        expect(row, list, at.item(i), f"a row of {k} counts")
        if len(row) != k:
            raise at.item(i).error(f"expected {k} counts (one per class), got {len(row)}")
        for j, count in enumerate(row):
            integer(count, at.item(i).item(j))


def check_metrics_block(metrics: Mapping[str, Any], at: At, k: int | None) -> None:
    """A cell's ``metrics``: pooled/mean/std/ci tables, unit counts, confusion matrix."""
    if "pooled" in metrics:
        check_metric_values(metrics["pooled"], at.key("pooled"))
    if "mean" in metrics:
        check_metric_values(metrics["mean"], at.key("mean"))
    if "std" in metrics:
        check_spread(metrics["std"], at.key("std"))
    if "ci" in metrics:
        check_intervals(metrics["ci"], at.key("ci"))
    for key in ("unit", "ci_method"):
        if key in metrics:
            text(metrics[key], at.key(key))
    if "n_predictions" in metrics:
        integer(metrics["n_predictions"], at.key("n_predictions"))
    if "n_units" in metrics:
        high = metrics.get("n_predictions")
        integer(metrics["n_units"], at.key("n_units"), 0, high if type(high) is int else None)
    if "per_class" in metrics:
        per_class = mapping(metrics["per_class"], at.key("per_class"))
        for name, row in per_class.items():
            for key, value in mapping(row, at.key("per_class").key(name)).items():
                number(value, at.key("per_class").key(name).key(key))
    if metrics.get("confusion") is not None and k is not None:
        check_confusion(metrics["confusion"], at.key("confusion"), k)


def check_scores(score: Any, at: At, n: int, k: int) -> None:
    """Per prediction: the positive-class score (binary) or k class probabilities."""
    expect(score, list, at, "a list of scores or null")
    if len(score) != n:
        raise at.error(f"expected {n} scores (one per prediction), got {len(score)}")
    if k == 2:
        number_list(score, at)
        return
    for i, row in enumerate(score):
        if not isinstance(row, list) or len(row) != k:
            raise at.item(i).error(f"expected {k} class scores, got {shown(row)}")
        number_list(row, at.item(i))


def check_fold(fold: FoldRecord, at: At, n_samples: int | None, k: int | None) -> None:
    """One fold: indices into the cell's samples, labels within the classes, scores."""
    integer(fold.fold, at.key("fold"))
    n = len(fold.test_index)
    index_list(fold.test_index, at.key("test_index"), n_samples, "a sample index")
    what = "a class index"
    index_list(fold.y_true, at.key("y_true"), k, what)
    index_list(fold.y_pred, at.key("y_pred"), k, what)
    for key, values in (("y_true", fold.y_true), ("y_pred", fold.y_pred)):
        if len(values) != n:
            raise at.key(key).error(f"{len(values)} values for {n} test_index entries")
    if fold.score is not None and k is not None:
        check_scores(fold.score, at.key("score"), n, k)
    check_metric_values(fold.metrics, at.key("metrics"))
    number(fold.fit_s, at.key("fit_s"), 0.0, None, null=False)


def _source_size(cell: CellRecord, ctx: CellContext) -> int | None:
    """How many images ``samples.source`` can index: the dataset's, or an external test set's."""
    if not cell.split.kind.startswith("external:"):
        return ctx.n_images
    external = cell.sections.get("external")
    test = external.get("test") if isinstance(external, Mapping) else None
    size = test.get("n_images") if isinstance(test, Mapping) else None
    return size if type(size) is int else None


def check_history(history: Any, at: At) -> None:
    """A training history: rows ``[{iteration, loss, ...}]`` or columns ``{loss: [...]}``."""
    if history is None:
        return
    if isinstance(history, list):
        for i, row in enumerate(history):
            if not isinstance(row, Mapping):
                mapping(row, at.item(i))
            for key in HISTORY_COLUMNS:
                value = row.get(key)
                if value is not None and not is_finite_number(value):
                    number(value, at.item(i).key(key))
        return
    mapping(history, at)
    for key in HISTORY_COLUMNS:
        value = history.get(key)
        if isinstance(value, list):
            optional_number_list(value, at.key(key))
        elif value is not None:
            number(value, at.key(key))


def check_sections(cell: CellRecord, at: At) -> None:
    """The builtin protocols' sections that reports read: ``training`` and ``models``."""
    training = cell.sections.get("training")
    if training is not None:
        mapping(training, at.key("training"))
        check_history(training.get("history"), at.key("training").key("history"))
        histories = training.get("fold_histories")
        if histories is not None:
            expect(histories, list, at.key("training").key("fold_histories"), "a list")
            for i, h in enumerate(histories):
                check_history(h, at.key("training").key("fold_histories").item(i))
    models = cell.sections.get("models")
    if models is not None:
        expect(models, list, at.key("models"), "a list")
        for i, entry in enumerate(models):
            mapping(entry, at.key("models").item(i))
            text(entry.get("path"), at.key("models").item(i).key("path"))


def check_cell(cell: CellRecord, at: At, ctx: CellContext) -> None:
    """Every field of one cell that reports, the gate and the leaderboard read."""
    text(cell.id, at.key("id"), empty=False)
    if cell.status not in CELL_STATUSES:
        raise at.key("status").error(
            f"expected one of {', '.join(CELL_STATUSES)}, got {shown(cell.status)}"
        )
    pretrained = cell.backbone_info.get("pretrained")
    expect(pretrained, bool, at.key("backbone_info").key("pretrained"), "true or false", True)
    if cell.split.folds is not None:
        integer(cell.split.folds, at.key("split").key("folds"), 1)
    if cell.split.holdout is not None:
        number(cell.split.holdout, at.key("split").key("holdout"), 0.0, 100.0)
    string_list(cell.classes, at.key("classes"), unique=True)
    complete = cell.status == "complete"
    if complete and len(cell.classes) < 2:
        raise at.key("classes").error(
            f"a complete cell needs 2 or more classes, got {cell.classes}"
        )
    if ctx.classes is not None and cell.classes and cell.classes != ctx.classes:
        raise at.key("classes").error(
            f"{cell.classes} differ from the dataset's classes {ctx.classes}"
        )
    if cell.positive is not None and cell.classes and cell.positive not in cell.classes:
        raise at.key("positive").error(f"{cell.positive!r} is not one of {cell.classes}")
    source = index_list(
        cell.samples.source,
        at.key("samples").key("source"),
        _source_size(cell, ctx),
        "an image index",
    )
    ref, where = cell.samples.transforms, at.key("samples").key("transforms")
    if ref != "identity" and ref not in ctx.transforms:
        raise where.error(f"{ref!r} is not in the record's transforms table")
    if ref != "identity" and source and ctx.transforms[ref] != len(source):
        covered = ctx.transforms[ref]
        raise where.error(
            f"transforms[{ref!r}] covers {covered} samples, the cell has {len(source)}"
        )
    if complete and not cell.folds:
        raise at.key("folds").error("a complete cell stores no folds (no test predictions)")
    k = len(cell.classes) if cell.classes else None
    n_samples = len(source) if source else None
    for i, fold in enumerate(cell.folds):
        check_fold(fold, at.key("folds").item(i), n_samples, k)
    check_metrics_block(cell.metrics, at.key("metrics"), k)
    check_sections(cell, at)
