"""Executors: what runs a protocol's jobs (in this process, on a Ray cluster, ...).

An executor receives the jobs of one protocol table (dependencies before
dependants), runs each through ``protocol.run_job(ctx, job, inputs)`` where
``inputs`` maps the job's ``deps`` to their results, and returns every result by
job id. It may run independent jobs in parallel and on other machines; it must
give each job exactly the results of its dependencies, so that the assembled
record is the same whatever the executor. Executors come from the
``leukobench_executors`` hook; ``local`` is the default.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bench.hookspecs import hookimpl
from bench.specs import ExecutorSpec

if TYPE_CHECKING:
    from bench.protocols.base import Job, Protocol
    from bench.protocols.context import RunContext

#: Called after each job finishes: (job, result, seconds it took).
OnResult = Callable[["Job", Any, float], None]


class Executor(ABC):
    """Runs jobs. ``close()`` releases whatever ``open`` acquired (clusters, pools)."""

    name: str = "?"

    @abstractmethod
    def run(
        self,
        ctx: RunContext,
        protocol: Protocol,
        jobs: Sequence[Job],
        on_result: OnResult | None = None,
    ) -> dict[str, Any]:
        """Run ``jobs`` (and nothing else); return ``{job.id: result}``.

        A job whose id is already in ``ctx``'s finished results may be skipped by
        the caller, never by the executor. ``KeyboardInterrupt`` cancels
        outstanding jobs and propagates; results already returned through
        ``on_result`` are kept by the caller.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (default: nothing)."""


class LocalExecutor(Executor):
    """Today's behaviour: every job in this process, in order."""

    name = "local"

    def run(
        self,
        ctx: RunContext,
        protocol: Protocol,
        jobs: Sequence[Job],
        on_result: OnResult | None = None,
    ) -> dict[str, Any]:
        import time

        results: dict[str, Any] = {}
        for job in jobs:
            inputs = {dep: results[dep] for dep in job.deps}
            started = time.perf_counter()
            results[job.id] = protocol.run_job(ctx, job, inputs)
            if on_result is not None:
                on_result(job, results[job.id], time.perf_counter() - started)
        return results


def inputs_for(job: Job, results: Mapping[str, Any]) -> dict[str, Any]:
    """The results of ``job``'s dependencies (KeyError names a missing one)."""
    missing = [d for d in job.deps if d not in results]
    if missing:
        raise KeyError(f"job {job.id!r} depends on unfinished job(s) {missing}")
    return {d: results[d] for d in job.deps}


@hookimpl
def leukobench_executors() -> ExecutorSpec:
    """The builtin ``local`` executor (registered through the entry-point group like any plugin)."""
    return ExecutorSpec("local", LocalExecutor, "every job in this process, in order (default)")
