"""The engine's main loop: suite -> context -> per seed, per table: jobs -> executor -> record.

The runner knows protocols only through :class:`bench.protocols.base.Protocol`:
it asks each ``[[protocol]]`` table's protocol for its cells and jobs, hands
the jobs to an executor (``local`` by default), assembles each cell as soon as
its jobs are done, and keeps the result record up to date on disk, so an
interrupted run leaves a record marked ``incomplete`` with what finished.
Everything checkable (settings, names, backbones and their weights) is checked
before the record is first written: an error before work leaves no record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from bench.data.prepare import PreparedData, prepare_data
from bench.protocols.context import CacheRoot, RunContext
from bench.records import CellRecord, RunRecord
from bench.registry import Registry, get_registry
from bench.results import (
    compact_transforms,
    environment,
    git_revision,
    new_run_id,
    now_iso,
    update_record,
    write_record,
)
from bench.suite import Cell, Suite
from bench.tracking import Tracking, open_tracking

if TYPE_CHECKING:
    from bench.executor import Executor
    from bench.protocols.base import Job, Protocol

__all__ = ["PreparedData", "TableWork", "new_record", "resolve_device", "run_suite"]

DEFAULT_EXECUTOR = "local"


@dataclass
class TableWork:
    """One ``[[protocol]]`` table for one seed: its protocol, cells and jobs."""

    index: int
    seed: int
    table: dict[str, Any]
    protocol: Protocol
    cells: list[Cell]
    jobs: list[Job]
    results: dict[str, Any] = field(default_factory=dict)


def new_record(suite: Suite, data: PreparedData, device: str) -> RunRecord:
    """A fresh (incomplete, cell-less) record for a run of ``suite`` on ``data``."""
    return RunRecord(
        run_id=new_run_id(suite.name, suite.digest()),
        status="incomplete",
        started=now_iso(),
        finished=None,
        suite={
            "name": suite.name,
            "description": suite.config["suite"]["description"],
            "path": str(suite.path) if suite.path else None,
            "sha256": suite.source_sha256,
            "config_sha256": suite.digest(),
            "config": suite.config,
        },
        seeds=suite.seeds,
        dataset=data.info,
        environment=environment(device),
        git_revision=git_revision(),
        timings={},
        cells=[],
    )


def resolve_device(requested: str) -> str:
    """The run's device, resolved once (``auto`` -> cuda > mps > cpu)."""
    from bench.device import resolve_device as resolve

    return str(resolve(requested))


def make_executor(
    registry: Registry,
    executor: str | Executor | None,
    suite: Suite,
    options: dict[str, Any] | None = None,
) -> Executor:
    """An executor instance: given, named, the suite's ``[run] executor``, or ``local``.

    The factory of executor ``NAME`` receives the suite's ``[run] NAME_KEY`` values as
    ``KEY=`` options (``[run] ray_address`` -> ``address``), then ``options`` (the
    command line's, e.g. ``--ray-address``) over them.
    """
    if executor is not None and not isinstance(executor, str):
        return executor
    name = executor or suite.config["run"].get("executor") or DEFAULT_EXECUTOR
    spec = registry.executor(name)
    prefix = f"{name}_"
    given = {
        key.removeprefix(prefix): value
        for key, value in suite.config["run"].items()
        if key.startswith(prefix)
    }
    given.update(options or {})
    return spec.factory(**given)


def plan_work(ctx: RunContext) -> list[TableWork]:
    """Cells and jobs of every table and seed (building backbones: errors surface now)."""
    work = []
    for seed in ctx.suite.seeds:
        for index, table in enumerate(ctx.suite.protocols):
            protocol = ctx.protocol(table["kind"])
            cells = protocol.cells(table, index, seed)
            jobs = protocol.jobs(ctx, table, index, seed, cells)
            work.append(TableWork(index, seed, table, protocol, cells, jobs))
    return work


def run_suite(
    suite: Suite,
    *,
    registry: Registry | None = None,
    results_dir: Path | None = None,
    console: Console | None = None,
    progress: bool = True,
    skip_bad: bool | None = None,
    cache_dir: Path | None = None,
    use_cache: bool | None = None,
    executor: str | Executor | None = None,
    track: list[str] | None = None,
    tracking_uri: str | None = None,
    executor_options: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Path]:
    """Run every cell of ``suite``; return the record (as stored) and where it was written.

    ``track`` names experiment trackers (``["mlflow"]``; default the suite's
    ``[run] track``) and ``tracking_uri`` where they log (default ``[run] tracking_uri``).

    Everything the run caches goes under ``cache_dir`` (default ``$LEUKOBENCH_CACHE``
    or ``~/.cache/leukobench``). ``executor`` is an executor name or instance
    (default: the suite's ``[run] executor``, else ``local``); ``executor_options``
    go to a named executor's factory (see :func:`make_executor`).
    """
    registry = registry or get_registry()
    console = console or Console(stderr=True)
    cache = CacheRoot.default(cache_dir)
    tracking = _tracking(suite, registry, console, track, tracking_uri)
    with cache.activate():
        executor = make_executor(registry, executor, suite, executor_options)
        return _run(
            suite,
            registry,
            cache,
            results_dir,
            console,
            progress,
            skip_bad,
            use_cache,
            executor,
            tracking,
        )


def _tracking(
    suite: Suite,
    registry: Registry,
    console: Console,
    track: list[str] | None,
    uri: str | None,
) -> Tracking:
    """The run's trackers, built before any work (a missing package is exit 2 now)."""
    run_cfg = suite.config["run"]
    names = list(run_cfg.get("track") or []) if track is None else list(track)
    options = {
        "uri": uri or run_cfg.get("tracking_uri"),
        "experiment": run_cfg.get("tracking_experiment"),
    }
    return open_tracking(names, options, registry, console)


def _run(
    suite: Suite,
    registry: Registry,
    cache: CacheRoot,
    results_dir: Path | None,
    console: Console,
    progress: bool,
    skip_bad: bool | None,
    use_cache: bool | None,
    executor: Executor,
    tracking: Tracking,
) -> tuple[dict[str, Any], Path]:
    started = time.perf_counter()
    run_cfg = suite.config["run"]
    device = resolve_device(run_cfg["device"])

    t0 = time.perf_counter()
    data = prepare_data(suite, registry, skip_bad=skip_bad, cache_dir=cache.path)
    validate_s = time.perf_counter() - t0
    if data.info["synthetic"]:
        console.print(
            "[yellow]dataset is SYNTHETIC (procedurally drawn): for smoke tests, never for claims[/yellow]"
        )
    if any(p.get("split") == "paper-leaky" for p in suite.protocols):
        console.print(
            "[bold red]LEAKY split requested (paper order: augment, then split): "
            "copies of one image sit on both sides; accuracy is inflated[/bold red]"
        )
    ctx = RunContext(
        suite=suite,
        registry=registry,
        data=data,
        device=device,
        cache=cache,
        use_cache=run_cfg["cache"] if use_cache is None else use_cache,
        console=console,
        progress=progress,
        results_dir=Path(results_dir or suite.config["suite"]["results_dir"]),
    )
    record = new_record(suite, data, device)
    ctx.run_id = record.run_id
    timings: dict[str, float] = {
        "validate_s": validate_s,
        "extract_s": 0.0,
        "fit_s": 0.0,
        "train_s": 0.0,
    }
    order = {c.id: i for i, c in enumerate(suite.cells(registry))}
    work = plan_work(ctx)  # an error here leaves no record: nothing has run

    path = write_record(record.to_json(), ctx.results_dir)
    ctx.run_id = path.stem  # unique, also when a run id repeats within one second
    console.print(f"[dim]result record: {path}[/dim]")
    clock = JobClock(
        sum(j.weight for tw in work for j in tw.jobs), len([j for tw in work for j in tw.jobs])
    )
    try:
        for tw in work:
            _run_table(ctx, executor, tw, record, order, timings, started, path, tracking, clock)
        record.status = "complete"
    finally:
        record.finished = now_iso()
        _checkpoint(record, ctx, timings, started, path)
        executor.close()
        ctx.throughput.save()  # what this run measured, for the next --dry-run's estimates
        tracking.notify(record, path, final=True)  # after the record is safe on disk
    return record.to_json(), path


def _run_table(
    ctx: RunContext,
    executor: Executor,
    tw: TableWork,
    record: RunRecord,
    order: dict[str, int],
    timings: dict[str, float],
    started: float,
    path: Path,
    tracking: Tracking,
    clock: JobClock,
) -> None:
    """Run one table's jobs; assemble (and checkpoint) each cell once its jobs are done."""
    waiting = {c.id: {j.id for j in tw.jobs if c.id in j.cells} for c in tw.cells}
    by_id = {c.id: c for c in tw.cells}

    def finish(cell_ids: list[str]) -> None:
        cells = [by_id[i] for i in cell_ids]
        done = tw.protocol.assemble(ctx, tw.table, tw.index, tw.seed, cells, tw.results)
        _insert(record, done, order)
        _checkpoint(record, ctx, timings, started, path)
        tracking.notify(record, path, final=False)

    def on_result(job: Job, result: Any, seconds: float) -> None:
        tw.results[job.id] = result
        key = f"{job.kind}_s"
        timings[key] = timings.get(key, 0.0) + seconds
        line = clock.tick(job, seconds)
        if line and ctx.progress:
            ctx.console.print(f"[dim]{line}[/dim]")
        ready = []
        for cell_id in job.cells:
            left = waiting.get(cell_id)
            if left is not None:
                left.discard(job.id)
                if not left:
                    ready.append(cell_id)
                    del waiting[cell_id]
        if ready:
            finish(ready)

    results = executor.run(ctx, tw.protocol, tw.jobs, on_result)
    for job in tw.jobs:  # an executor that reported nothing through on_result
        if job.id not in tw.results:
            on_result(job, results[job.id], 0.0)
    if waiting:  # cells without jobs of their own
        finish(list(waiting))


def _insert(record: RunRecord, cells: list[CellRecord], order: dict[str, int]) -> None:
    """Add assembled cells, keeping the suite's cell order whatever order jobs finished in."""
    record.cells.extend(cells)
    record.cells.sort(key=lambda c: order.get(c.id, len(order)))


def _checkpoint(
    record: RunRecord, ctx: RunContext, timings: dict[str, float], started: float, path: Path
) -> None:
    record.transforms = {ref: compact_transforms(k) for ref, k in ctx.transforms.items()}
    record.timings = {
        **{k: round(v, 3) for k, v in timings.items()},
        "total_s": round(time.perf_counter() - started, 3),
    }
    update_record(record.to_json(), path)


@dataclass
class JobClock:
    """Jobs done and an ETA for the whole run, from the jobs' weights and the time so far."""

    total_weight: float
    total_jobs: int
    done_weight: float = 0.0
    done_jobs: int = 0
    started: float = field(default_factory=time.perf_counter)

    def tick(self, job: Job, seconds: float) -> str | None:
        """Count ``job`` done; a progress line when the run has more than one job."""
        from bench.throughput import describe_seconds

        self.done_jobs += 1
        self.done_weight += job.weight
        if self.total_jobs <= 1:
            return None
        elapsed = time.perf_counter() - self.started
        left = max(0.0, self.total_weight - self.done_weight)
        eta = elapsed / self.done_weight * left if self.done_weight > 0 else None
        when = "run done" if not left else f"run ETA {describe_seconds(eta)}"
        return f"job {self.done_jobs}/{self.total_jobs} ({job.kind}, {seconds:.1f}s); {when}"
