"""What ``leukobench run`` prints at the end: Table 1 of the run just finished."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from bench.records import RunRecord


def print_run_summary(
    record: RunRecord | dict[str, Any], console: Console, *, extra: bool = False
) -> None:
    """Table 1 (rich) for ``record``, plus a line per failed cell."""
    from bench.render import render_rich
    from bench.report import EXTRA_METRICS, as_run_record, table1

    record = as_run_record(record)

    if not console.is_terminal and console.width < 140:
        # logs and pipes: no terminal width to respect, so do not squeeze the table
        console = Console(file=console.file, width=140)
    render_rich(table1(record, extra=EXTRA_METRICS if extra else ()), console)
    for cell in record.failed_cells():
        console.print(f"[red]cell {cell.id} {cell.status}: {cell.error or ''}[/red]")
