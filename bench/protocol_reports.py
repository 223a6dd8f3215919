"""Per-protocol report extensions: extra tables and figures a protocol declares for its cells.

``report`` adds, after Table 1, every table a record's protocols return from
:meth:`bench.protocols.base.Protocol.report_tables` (and with ``--figures``, every
figure from :meth:`~bench.protocols.base.Protocol.figures`). The engine never names
a protocol: it asks each installed protocol found in the record about its own cells.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.records import CellRecord, RunRecord
from bench.render import Table

__all__ = ["protocol_figures", "protocol_tables"]


def _typed(record: RunRecord | Mapping[str, Any]) -> RunRecord:
    if isinstance(record, RunRecord):
        return record
    return RunRecord.from_json(record, f"record {record.get('run_id', '?')}")


def _by_protocol(record: RunRecord) -> Iterable[tuple[Any, list[CellRecord]]]:
    from bench.registry import get_registry

    groups: dict[str, list[CellRecord]] = {}
    for cell in record.cells:
        if cell.complete:
            groups.setdefault(cell.protocol, []).append(cell)
    for name, cells in groups.items():
        try:
            spec = get_registry().protocols.get(name)
        except UserError:
            spec = None
        if spec is not None:
            yield spec.factory(), cells


def protocol_tables(records: Iterable[RunRecord | Mapping[str, Any]]) -> list[Table]:
    """Every extra table the records' protocols declare, record by record."""
    out: list[Table] = []
    for record in map(_typed, records):
        for protocol, cells in _by_protocol(record):
            out += protocol.report_tables(record, cells)
    return out


def protocol_figures(records: Iterable[RunRecord | Mapping[str, Any]], out_dir: Path) -> list[Path]:
    """Every extra figure the records' protocols declare, written under ``out_dir``."""
    out: list[Path] = []
    for record in map(_typed, records):
        for protocol, cells in _by_protocol(record):
            out += protocol.figures(record, cells, Path(out_dir))
    return out
