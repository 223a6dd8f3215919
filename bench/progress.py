"""Progress bars (rich) for the long loops: extraction and fine-tuning share one look.

A bar is ``description | bar | done/total | [percent] | metrics... | elapsed | [ETA]
remaining``; a caller names only its metrics. Disabled bars cost nothing (no rich import).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any


@contextlib.contextmanager
def progress_bar(
    enabled: bool,
    *,
    title: str = "{task.description}",
    metrics: Sequence[str] = (),
    percent: bool = False,
    eta_label: bool = False,
) -> Iterator[Any]:
    """A started ``rich.progress.Progress`` for the block, or ``None`` when not ``enabled``.

    ``title`` and each of ``metrics`` are rich text-column formats (``{task.fields[x]}``
    reads a field the caller passes to ``add_task``/``update``); ``percent`` adds a
    percentage column, ``eta_label`` the word "ETA" before the time remaining.
    """
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [TextColumn(title), BarColumn(), MofNCompleteColumn()]
    if percent:
        columns.append(TaskProgressColumn())
    columns += [TextColumn(m) for m in metrics]
    columns.append(TimeElapsedColumn())
    if eta_label:
        columns.append(TextColumn("ETA"))
    columns.append(TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        yield bar


@contextlib.contextmanager
def rate_bar(
    enabled: bool, total: int, label: str, *, verb: str = "extract", unit: str = "img"
) -> Iterator[Callable[[int], None]]:
    """A bar of ``total`` items with items per second; yields ``update(done)`` (a no-op
    when not ``enabled``)."""
    if not enabled:
        yield lambda done: None
        return
    with progress_bar(
        True,
        title=f"[bold]{verb}[/] {{task.description}}",
        metrics=(f"{{task.fields[rate]}} {unit}/s",),
        percent=True,
    ) as bar:
        task = bar.add_task(label, total=total, rate="-")
        t0 = time.perf_counter()

        def update(done: int) -> None:
            dt = time.perf_counter() - t0
            bar.update(task, completed=done, rate=f"{done / dt:.1f}" if dt > 0 else "-")

        yield update
