"""One live display for the cluster: jobs done / running / failed, throughput, ETA.

Fed by the executor as tasks finish (the same moments the runner's
``on_result`` is called). "running" counts the submitted jobs whose
dependencies are done: they run, or wait in Ray's queue for a CPU or GPU.
Throughput and ETA come from the jobs' ``weight`` (a protocol's relative cost:
images for extraction and fine-tuning jobs), per second of wall time since the
table started.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from bench.protocols.base import Job


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ClusterProgress:
    """A rich live line (or nothing, when ``enabled`` is False) for one table's jobs."""

    def __init__(
        self,
        console: Console,
        jobs: Sequence[Job],
        *,
        enabled: bool = True,
        where: str = "",
    ) -> None:
        self.console = console
        self.jobs = {j.id: j for j in jobs}
        self.where = where
        self.done: set[str] = set()
        self.failed: set[str] = set()
        self.total_weight = sum(max(0.0, j.weight) for j in jobs) or 1.0
        self.done_weight = 0.0
        self.started = time.perf_counter()
        self._live = None
        if enabled and jobs:
            from rich.live import Live

            self._live = Live(self.render(), console=console, refresh_per_second=4, transient=True)
            self._live.start()

    # -- what happened -----------------------------------------------------------------------
    def finished(self, job: Job) -> None:
        self.done.add(job.id)
        self.done_weight += max(0.0, job.weight)
        self.refresh()

    def failed_job(self, job: Job) -> None:
        self.failed.add(job.id)
        self.refresh()

    @property
    def running(self) -> int:
        """Submitted jobs whose dependencies are all done (running, or queued for resources)."""
        over = self.done | self.failed
        return sum(
            1
            for j in self.jobs.values()
            if j.id not in over and all(d in self.done or d not in self.jobs for d in j.deps)
        )

    # -- showing it ------------------------------------------------------------------------
    def line(self) -> str:
        """``ray: 3/12 jobs done · 2 running · 0 failed · 118 img/s · ETA 0:01:20``."""
        elapsed = time.perf_counter() - self.started
        bits = [
            f"ray{self.where}: {len(self.done)}/{len(self.jobs)} jobs done",
            f"{self.running} running",
            f"{len(self.failed)} failed",
        ]
        if self.done_weight > 0 and elapsed > 0:
            rate = self.done_weight / elapsed
            bits.append(f"{rate:,.1f} img/s")
            bits.append(f"ETA {_clock((self.total_weight - self.done_weight) / rate)}")
        else:
            bits.append("ETA -")
        bits.append(f"elapsed {_clock(elapsed)}")
        return " · ".join(bits)

    def render(self):  # -> rich.text.Text
        from rich.text import Text

        return Text(self.line(), style="cyan")

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self.render())

    def stop(self) -> None:
        """End the live line and leave its last state printed once."""
        if self._live is not None:
            self._live.stop()
            self._live = None
            self.console.print(f"[dim]{self.line()}[/dim]")
