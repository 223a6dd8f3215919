"""Reading a result file: JSON, then typed (:mod:`bench.records.run`), then checked.

:func:`read_run_record` is the one way reports, the regression gate, the leaderboard and
the API read a stored record: every field is checked and every stored metric compared
with the stored predictions (:mod:`bench.records.record_checks`), so a malformed or
edited record is one :class:`~bench.records.cells.RecordError` line (exit 2) naming the
file and the field, never a wrong number or a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.records.cells import RecordError
from bench.records.record_checks import check_run_record
from bench.records.run import RunRecord


def read_json(path: Path) -> object:
    """The JSON value in ``path``; RecordError naming the file when it cannot be read."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{path}: no such result file") from None
    except RecursionError:
        raise RecordError(
            f"{path}: not a readable JSON result record (nested too deeply)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: not a readable JSON result record ({exc})") from None


def read_run_record(path: Path, *, check: bool = True) -> RunRecord:
    """Read a result file; :class:`RecordError` (exit 2) names the file and the field.

    ``check`` (the default) checks every field and the stored metrics against the
    stored predictions; ``check=False`` only types the record.
    """
    path = Path(path)
    raw = read_json(path)
    try:
        record = RunRecord.from_json(raw, str(path))
        if check:
            check_run_record(record, str(path))
    except RecursionError:
        raise RecordError(f"{path}: not a readable result record (nested too deeply)") from None
    record.path = path
    return record
