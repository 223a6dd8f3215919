"""Methods: the complete cells of one record that differ only by seed (rows of Table 1).

Labels and the Table 1 family come from the cell's protocol (through the
registry: :meth:`~bench.protocols.base.Protocol.row_label`,
:meth:`~bench.protocols.base.Protocol.method_label`, ``model``); for a protocol
that is not installed, from the record's own ``label`` and ``model``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.errors import UserError
from bench.records import CellRecord, RunRecord, SplitInfo
from bench.report.estimates import Estimate, as_cell, cell_estimate, combine, pooled_predictions


def as_run_record(record: RunRecord | Mapping[str, Any], where: str | None = None) -> RunRecord:
    """``record`` typed: a :class:`RunRecord` as is, a stored dict read (RecordError if malformed)."""
    if isinstance(record, RunRecord):
        return record
    if where is None:
        rid = record.get("run_id", "?") if isinstance(record, Mapping) else "?"
        where = f"record {rid}"
    return RunRecord.from_json(record, where)


def protocol_for(name: str) -> Any:
    """The installed protocol ``name`` (a :class:`~bench.protocols.base.Protocol`), or None."""
    from bench.registry import get_registry

    try:
        spec = get_registry().protocols.get(name)
    except UserError:
        return None
    return spec.factory() if spec is not None else None


def row_label(cell: CellRecord | Mapping[str, Any]) -> str:
    """Table 1 row text of a cell, from its protocol (or the record's label)."""
    cell = as_cell(cell)
    proto = protocol_for(cell.protocol)
    return proto.row_label(cell) if proto is not None else f"{cell.backbone} + {cell.label}"


def method_label(cell: CellRecord | Mapping[str, Any]) -> str:
    """Short method name of a cell (leaderboards, comparisons), from its protocol."""
    cell = as_cell(cell)
    proto = protocol_for(cell.protocol)
    return proto.method_label(cell) if proto is not None else cell.label


def model_of(cell: CellRecord | Mapping[str, Any]) -> str:
    """The Table 1 family of a cell (``Model 1``, ...), from its protocol or the record."""
    cell = as_cell(cell)
    proto = protocol_for(cell.protocol)
    return str(proto.model) if proto is not None else cell.model


def split_label(split: SplitInfo | Mapping[str, Any] | None) -> str:
    """'grouped 10-fold', 'paper-leaky hold-out 80/20', ..."""
    if split is None:
        split = SplitInfo("?")
    if not isinstance(split, SplitInfo):
        split = SplitInfo.from_json(dict(split), "split")
    return split.label


def is_leaky(cell: CellRecord | Mapping[str, Any]) -> bool:
    return as_cell(cell).leaky


def is_complete(cell: CellRecord | Mapping[str, Any]) -> bool:
    """A cell that finished and stored its fold predictions."""
    return as_cell(cell).complete


def is_pretrained(cell: CellRecord | Mapping[str, Any]) -> bool:
    return as_cell(cell).pretrained


@dataclass
class Method:
    """Cells of one record that differ only by seed."""

    protocol: str
    backbone: str
    classifier: str
    label: str
    split: SplitInfo
    cells: list[CellRecord] = field(default_factory=list)

    @property
    def model(self) -> str:
        return model_of(self.cells[0]) if self.cells else "Model 1"

    @property
    def leaky(self) -> bool:
        return any(c.leaky for c in self.cells)

    @property
    def pretrained(self) -> bool:
        return all(c.pretrained for c in self.cells)

    @property
    def seeds(self) -> list[Any]:
        return [c.seed for c in self.cells]

    @property
    def split_text(self) -> str:
        return self.split.label

    @property
    def method(self) -> str:
        """The short method name (``SVM (cubic)``, ``fine-tuned``)."""
        return method_label(self.cells[0]) if self.cells else self.label

    @property
    def name(self) -> str:
        """Row label: 'alexnet + SVM (cubic)' or 'fine-tuned alexnet (hold-out 80/20)'."""
        text = row_label(self.cells[0]) if self.cells else f"{self.backbone} + {self.label}"
        if not self.pretrained:
            text += " (not pretrained)"
        if self.leaky:
            text += " [LEAKY]"
        return text

    def estimate(self, metric: str) -> Estimate:
        return combine([cell_estimate(c, metric) for c in self.cells])

    def n_evaluated(self) -> int:
        """Predictions per seed (test samples pooled over folds)."""
        y_true, _, _ = pooled_predictions(self.cells[0])
        return int(len(y_true))


def methods(record: RunRecord | Mapping[str, Any]) -> list[Method]:
    """Complete cells grouped into methods, by Table 1 family (Model 1 first), in record order."""
    record = as_run_record(record)
    found: dict[tuple, Method] = {}
    for cell in record.cells:
        if not cell.complete:
            continue
        split = cell.split
        key = (
            cell.protocol,
            cell.backbone,
            cell.classifier,
            split.kind,
            split.folds,
            split.holdout,
            str(cell.augmentation),
        )
        if key not in found:
            found[key] = Method(cell.protocol, cell.backbone, cell.classifier, cell.label, split)
        found[key].cells.append(cell)
    return sorted(found.values(), key=lambda m: m.model)  # stable: record order within a model


def failed_cells(record: RunRecord | Mapping[str, Any]) -> list[CellRecord]:
    return as_run_record(record).failed_cells()
