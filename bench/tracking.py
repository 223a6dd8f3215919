"""Experiment tracking: sinks that hear about a run's record each time it is written.

A *tracker* (from the ``leukobench_trackers`` hook; MLflow and TensorBoard are
builtin plugins) is told ``record_written(record, path, final=...)`` after every
checkpoint of the result record and once more when the run ends. Tracking never
costs a result: a tracker that fails (server down, bad URI, full disk) is
reported once, naming its target, and then left alone; the record on disk is
the source of truth and is written before any tracker is called.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

    from bench.records import RunRecord
    from bench.registry import Registry


class Tracker(ABC):
    """A sink for result records. ``target`` names where it logs (a URI, a folder)."""

    target: str = "?"

    @abstractmethod
    def record_written(self, record: RunRecord, path: Path, *, final: bool) -> None:
        """The record at ``path`` was (re)written; ``final`` is True once, at the end."""


class Tracking:
    """The trackers of one run; a failing tracker warns once and is dropped."""

    def __init__(self, trackers: Sequence[tuple[str, Tracker]], console: Console | None) -> None:
        self.trackers = list(trackers)
        self.console = console
        self.failed: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def notify(self, record: RunRecord, path: Path, *, final: bool) -> None:
        for name, tracker in list(self.trackers):
            try:
                tracker.record_written(record, path, final=final)
            except Exception as exc:  # a tracker never costs a result
                self.trackers.remove((name, tracker))
                reason = " ".join(str(exc).split())[:300] or type(exc).__name__
                self.failed[name] = reason
                message = (
                    f"tracking: {name} at {tracker.target} failed, not tracking this run "
                    f"(the result record is safe): {reason}"
                )
                if self.console is not None:
                    self.console.print(f"[yellow]warning: {message}[/yellow]", markup=True)


def open_tracking(
    names: Sequence[str],
    options: dict[str, Any],
    registry: Registry,
    console: Console | None = None,
) -> Tracking:
    """Build the named trackers; an unknown name or a missing package is exit 2 (before work)."""
    trackers = []
    for name in names:
        spec = registry.tracker(name)
        try:
            trackers.append((name, spec.factory(**options)))
        except UserError:
            raise
        except TypeError as exc:
            raise UserError(f"tracker {name!r}: bad option(s) {sorted(options)}: {exc}") from None
    return Tracking(trackers, console)
