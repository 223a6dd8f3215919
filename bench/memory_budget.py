"""A memory budget for Model 1 cross-validation (``[run] memory_limit``).

``parse_memory_limit`` turns the suite value (``"auto"``, ``"6GB"``, ``"512MiB"``
or a number of bytes) into bytes; ``"auto"`` is 80% of the memory available
now (``MemAvailable`` on Linux). :class:`MemoryBudget` admits work so that the
estimated bytes of everything running stay under the limit: shared artefacts
(a Gram matrix, a presort) are *taken* for the rest of the run, tasks *hold*
their estimate while they run and wait while the budget is full; a task runs
alone when nothing else is running, whatever its estimate.
:meth:`MemoryBudget.hold_next` lets a worker skip ahead: it starts the first
pending task that fits now rather than wait for the one at the head of the
queue (two large SVM folds wait for each other, a tree fold fits beside one).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from bench.errors import UserError

T = TypeVar("T")

AUTO_FRACTION = 0.8
# Of an explicit limit, what the estimates leave for what they do not count: the
# allocator's free lists, the interpreter's own objects, BLAS work buffers. At
# n = 10,000 x 4,096 with "4GB" the process peaked 0.13 GB above its estimates.
SLACK_FRACTION = 0.05
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable``; total RAM where that is unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 8 * 2**30


def resident_bytes() -> int:
    """This process's resident memory now (``/proc/self/statm``; 0 where unknown)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def is_auto(value: str | int | float | None) -> bool:
    """Whether a ``memory_limit`` value means "auto" (a share of the memory available now)."""
    return value is None or (isinstance(value, str) and value.strip().lower() == "auto")


def start_budget(value: str | int | float | None, features_bytes: int) -> MemoryBudget:
    """The budget of one cross-validation: the limit, with what is already held taken.

    An explicit limit bounds the whole process, so its resident memory now (the
    imports, the features, anything else it holds) and a slack of
    ``SLACK_FRACTION`` of the limit count against it; ``"auto"`` is a share of
    the memory still available, so only the features count.
    """
    budget = MemoryBudget(parse_memory_limit(value))
    if is_auto(value):
        held = features_bytes
    else:
        held = max(features_bytes, resident_bytes()) + int(SLACK_FRACTION * budget.limit)
    budget.take(held)
    return budget


def parse_memory_limit(value: str | int | float | None, *, key: str = "run.memory_limit") -> int:
    """Bytes for a memory limit: ``"auto"``/None, ``"6GB"``, ``"512MiB"``, or a number of bytes."""
    if is_auto(value):
        return int(AUTO_FRACTION * available_memory())
    if isinstance(value, bool):
        raise UserError(f"{key}: expected 'auto' or a size like '6GB', got {value!r}")
    if isinstance(value, int | float):
        nbytes = float(value)
    else:
        match = _SIZE.match(str(value))
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise UserError(
                f"{key}: expected 'auto' or a size like '6GB' or '512MiB', got {value!r}"
            )
        nbytes = float(match.group(1)) * _UNITS[unit]
    if not nbytes > 2**20 or nbytes != nbytes:
        raise UserError(f"{key}: {value!r} is too small; give at least '1MiB' (or 'auto')")
    return int(nbytes)


def format_bytes(nbytes: float) -> str:
    """``1.2 GB`` style (decimal units)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(nbytes) >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{int(nbytes)} B"


class MemoryBudget:
    """Bytes admitted under ``limit``: shared artefacts (taken) plus running tasks (held)."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self.taken = 0
        self.held = 0
        self.running = 0
        self._cond = threading.Condition()

    def free(self) -> int:
        """Bytes not taken or held now."""
        with self._cond:
            return self.limit - self.taken - self.held

    def take(self, nbytes: int) -> None:
        """Account for a shared artefact kept until the run ends."""
        with self._cond:
            self.taken += int(nbytes)

    def give_back(self, nbytes: int) -> None:
        """A shared artefact was dropped."""
        with self._cond:
            self.taken -= int(nbytes)
            self._cond.notify_all()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        """Run a task of ``nbytes`` once it fits (or once nothing else runs)."""
        nbytes = int(nbytes)
        with self._cond:
            while self.running and self.taken + self.held + nbytes > self.limit:
                self._cond.wait()
            self.held += nbytes
            self.running += 1
        try:
            yield
        finally:
            with self._cond:
                self.held -= nbytes
                self.running -= 1
                self._cond.notify_all()

    def hold_next(
        self,
        pending: list[T],
        need: Callable[[T], int],
        ready: Callable[[T], bool] | None = None,
    ) -> tuple[T, int] | None:
        """Remove and hold the first of ``pending`` whose ``need`` fits now; None when empty.

        With ``ready``, the first that fits *and* is ready goes first (a task that would
        wait for another thread's shared work is passed over while others can run); when
        none is, the first that fits. Estimates are computed outside the lock (they may
        build shared state) and again after every change. The caller runs the task, then
        calls :meth:`release` with the returned bytes.
        """
        while True:
            with self._cond:
                snapshot = list(pending)
            if not snapshot:
                return None
            sizes = [(item, int(need(item))) for item in snapshot]
            order = sizes
            if ready is not None:
                flags = [ready(item) for item, _ in sizes]
                order = [s for s, ok in zip(sizes, flags, strict=True) if ok]
                order += [s for s, ok in zip(sizes, flags, strict=True) if not ok]
            with self._cond:
                for item, nbytes in order:
                    if item not in pending:
                        continue
                    if not self.running or self.taken + self.held + nbytes <= self.limit:
                        pending.remove(item)
                        self.held += nbytes
                        self.running += 1
                        return item, nbytes
                if any(item in pending for item, _ in sizes):
                    self._cond.wait(timeout=1.0)  # a task ended or the budget changed

    def release(self, nbytes: int) -> None:
        """A task started by :meth:`hold_next` is done."""
        with self._cond:
            self.held -= int(nbytes)
            self.running -= 1
            self._cond.notify_all()
