"""Typed result records: a run, its cells and their folds, with one serialiser.

The JSON schema (``leukobench.result/1``, docs/results.md) is unchanged: every
record written before these classes existed reads back, and :meth:`to_json`
writes the same keys in the same order. Protocol-specific sections of a cell
(``training`` for fine-tuning, or a new protocol's own) are kept in
``CellRecord.sections`` and written as top-level keys after the standard ones.

Loading checks types field by field: a malformed record raises
:class:`RecordError` naming the file and the field, never a bare ``KeyError``.
:func:`read_run_record` (every record read from a file) also checks ranges, indices,
lengths and the stored metrics against the stored predictions
(:mod:`bench.records.record_checks`, :mod:`bench.records.consistency`).
"""

from bench.records.cells import (
    CellRecord,
    FoldRecord,
    RecordError,
    SampleRef,
    SplitInfo,
)
from bench.records.reader import read_run_record
from bench.records.run import RunRecord

__all__ = [
    "CellRecord",
    "FoldRecord",
    "RecordError",
    "RunRecord",
    "SampleRef",
    "SplitInfo",
    "read_run_record",
]
