"""The Ray executor: one Ray task per job; Ray schedules, places, retries.

Per ``run`` (one protocol table): the detached context and the protocol are
``ray.put`` once (workers open it once, :mod:`plugins.ray_executor.worker`);
every job becomes a task asking for ``num_cpus`` / ``num_gpus`` / ``memory``
from :class:`bench.protocols.base.Resources`, submitted with its dependencies'
result ObjectRefs as arguments, so Ray starts it once they exist and hands it
their values (features travel through the object store, zero-copy on one
node). ``max_retries`` re-runs a task whose worker died; an exception raised by
a job is not retried: it cancels the outstanding tasks and is raised here as
itself (a :class:`~bench.errors.UserError` still exits 2). Ctrl-C cancels the
outstanding tasks and propagates; every result already reported through
``on_result`` is kept by the runner, and jobs write their caches themselves,
so a rerun resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.atomic import atomic_write_text
from bench.errors import UserError
from bench.executor import Executor, OnResult
from plugins.ray_executor.cluster import NodeLimits, connect, node_limits, probe
from plugins.ray_executor.progress import ClusterProgress
from plugins.ray_executor.worker import MARKER_DIR, Shipment, TaskInfo, run_job_task

if TYPE_CHECKING:
    from bench.protocols.base import Job, Protocol
    from bench.protocols.context import RunContext

#: Retries of a task whose worker process (or node) died; Ray's own default is 3.
DEFAULT_MAX_RETRIES = 3
#: How often the driver wakes up while waiting (Ctrl-C and the display need it).
POLL_S = 0.25


class RayExecutor(Executor):
    """Runs each job as a Ray task (see the module docstring)."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        if max_retries < 0:
            raise UserError(f"ray executor: max_retries must be >= 0, got {max_retries}")
        self.address = (address or "").strip() or None
        if self.address and self.address != "auto":
            probe(self.address)  # an address nobody answers at fails now, before any work
        self.num_cpus = num_cpus
        self.max_retries = int(max_retries)
        self._initialised = False
        self._connected = False
        self._shipments: dict[int, tuple[Any, Any]] = {}
        self._protocols: dict[int, tuple[Any, Any]] = {}
        self._remote: Any = None
        self._markers: list[Path] = []
        self.warned_unshared = False

    # -- the cluster -------------------------------------------------------------------------
    def _connect(self) -> None:
        import ray

        if not self._connected:
            self._initialised = connect(self.address, self.num_cpus)
            self._connected = True
            # One task returns two objects: the result (what dependants receive) and a TaskInfo.
            self._remote = ray.remote(num_returns=2)(run_job_task)

    def close(self) -> None:
        """Drop the shipped contexts; stop a cluster this executor started (disconnect otherwise)."""
        self._shipments.clear()
        self._protocols.clear()
        for path in self._markers:
            path.unlink(missing_ok=True)
        self._markers.clear()
        if self._initialised:
            import ray

            ray.shutdown()
        self._initialised = self._connected = False

    def _ship(self, ctx: RunContext, protocol: Protocol) -> list[Any]:
        """The ObjectRefs of the run's context (put once per run) and of ``protocol``."""
        import ray
        import torch

        key = id(ctx)
        if key not in self._shipments:
            marker, path = _write_marker(Path(ctx.cache.path))
            if path is not None:
                self._markers.append(path)
            spec = dataclasses.replace(ctx.detach(), progress=False)
            shipment = Shipment(spec, torch.get_num_threads(), marker)
            # the context itself is kept too, so its id() cannot be reused while shipped
            self._shipments[key] = (ctx, ray.put(shipment))
        if id(protocol) not in self._protocols:
            self._protocols[id(protocol)] = (protocol, ray.put(protocol))
        return [self._shipments[key][1], self._protocols[id(protocol)][1]]

    def _options(self, job: Job, limits: NodeLimits) -> dict[str, Any]:
        res = job.resources
        if res.gpus > limits.gpus:
            raise UserError(
                f"job {job.id!r} needs {res.gpus:g} GPU(s) but no node of the Ray cluster has "
                f"that many ({limits.gpus:g}): start GPU workers with `ray start --num-gpus=N`, "
                'or set [run] device = "cpu"'
            )
        opts: dict[str, Any] = {
            # A job may ask for more cores than the biggest node has: it gets that node.
            "num_cpus": min(float(res.cpus), limits.cpus) if limits.cpus else float(res.cpus),
            "num_gpus": float(res.gpus),
            "max_retries": self.max_retries,
            "retry_exceptions": False,
            "name": job.id,
        }
        if res.memory_bytes:
            opts["memory"] = int(res.memory_bytes)
        return opts

    # -- running -----------------------------------------------------------------------------
    def run(
        self,
        ctx: RunContext,
        protocol: Protocol,
        jobs: Sequence[Job],
        on_result: OnResult | None = None,
    ) -> dict[str, Any]:
        import ray

        if not jobs:
            return {}
        self._connect()
        box = self._ship(ctx, protocol)
        limits = node_limits()
        refs: dict[str, tuple[Any, Any]] = {}
        for job in jobs:
            missing = [d for d in job.deps if d not in refs]
            if missing:
                raise KeyError(
                    f"job {job.id!r} depends on job(s) {missing} not submitted before it"
                )
            deps = [refs[d][0] for d in job.deps]
            refs[job.id] = self._remote.options(**self._options(job, limits)).remote(
                box, job, *deps
            )
        by_info = {info: job for job, (_, info) in zip(jobs, refs.values())}
        display = ClusterProgress(ctx.console, jobs, enabled=ctx.progress)
        results: dict[str, Any] = {}
        try:
            while by_info:
                ready, _ = ray.wait(list(by_info), num_returns=1, timeout=POLL_S)
                display.refresh()
                for info_ref in ready:
                    job = by_info.pop(info_ref)
                    try:
                        info: TaskInfo = ray.get(info_ref)
                        value = ray.get(refs[job.id][0])
                    except ray.exceptions.RayTaskError as exc:
                        display.failed_job(job)
                        raise _unwrap(exc, job) from None
                    except ray.exceptions.RayError as exc:
                        display.failed_job(job)
                        raise RuntimeError(f"ray: job {job.id!r} failed: {exc}") from None
                    results[job.id] = value
                    display.finished(job)
                    self._note_cache(ctx, info)
                    if on_result is not None:
                        on_result(job, value, info.seconds)
        except BaseException:
            self._cancel_outstanding(list(by_info.values()), set(results), refs)
            raise
        finally:
            display.stop()
        return results

    def _cancel_outstanding(
        self, outstanding: list[Job], finished: set[str], refs: dict[str, tuple[Any, Any]]
    ) -> None:
        """``ray.cancel`` the jobs not finished; a cluster this executor started stops at close.

        A job whose dependencies are done may be finishing right now, and Ray 2.60 can
        abort the driver when a cancel crosses a task's completion
        (ray-project/ray#54846). On a cluster it started, the executor leaves those to
        ``ray.shutdown()`` in :meth:`close` (which ends every task); queued jobs still
        waiting for their dependencies cannot be running and are always cancelled.
        """
        waiting = [j for j in outstanding if any(d not in finished for d in j.deps)]
        maybe_running = [j for j in outstanding if j not in waiting]
        _cancel([refs[j.id][0] for j in waiting])
        if not self._initialised:
            _cancel([refs[j.id][0] for j in maybe_running])

    def _note_cache(self, ctx: RunContext, info: TaskInfo) -> None:
        if not info.shared_cache and ctx.use_cache and not self.warned_unshared:
            self.warned_unshared = True
            ctx.console.print(
                f"[yellow]ray: node {info.node[:12]} does not see the cache root "
                f"{ctx.cache.path}: its caches stay on that node (results still come back "
                "through the object store). Put the cache on shared storage: "
                "docs/distributed.md[/yellow]"
            )


def _unwrap(exc: Any, job: Job) -> BaseException:
    """The exception the job raised (a UserError stays one), not Ray's wrapper."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, KeyboardInterrupt):
        return KeyboardInterrupt()
    if isinstance(cause, BaseException):
        return cause
    return RuntimeError(f"ray: job {job.id!r} failed: {exc}")


def _cancel(refs: list[Any]) -> None:
    """Cancel outstanding tasks (queued ones never start; running ones get KeyboardInterrupt)."""
    import ray

    for ref in refs:
        # a task that finished meanwhile, or a connection already lost: nothing to cancel
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=False)


def _write_marker(cache: Path) -> tuple[str, Path | None]:
    """A fresh token file in the cache root; workers that find it share the cache."""
    token = secrets.token_hex(8)
    path = cache / MARKER_DIR / token
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, token)
    except OSError:
        return "", None
    return token, path
