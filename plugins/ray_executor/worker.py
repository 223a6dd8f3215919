"""What runs inside a Ray worker: open the run's context once, then run one job.

The driver ``ray.put`` s one :class:`Shipment` per run (the detached context,
the torch thread count and the cache marker) and each protocol object once. A worker process
keeps the contexts it opened in a small memo keyed by the shipment's ObjectRef,
so the tasks of one run that land on one worker open the context (suite,
prepared data, cache root) once and share its memos (built backbones, decoded
images, samples).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.protocols.base import Job, Protocol
    from bench.protocols.context import ContextSpec, RunContext

#: How many runs' contexts one worker process keeps open.
MEMO_SIZE = 2
#: Folder in the cache root where a driver leaves one token file per run: a worker
#: that finds the run's token sees the driver's cache (shared storage).
MARKER_DIR = ".ray-markers"

_OPEN: OrderedDict[str, tuple[RunContext, Shipment]] = OrderedDict()
_PROTOCOLS: OrderedDict[str, Protocol] = OrderedDict()


@dataclass(frozen=True)
class Shipment:
    """What every task of one run needs, shipped once through the object store."""

    spec: ContextSpec
    torch_threads: int
    marker: str


@dataclass(frozen=True)
class TaskInfo:
    """What a task reports besides its result: time, where it ran, whether the cache is shared."""

    seconds: float
    node: str
    pid: int
    shared_cache: bool


def _remember(memo: OrderedDict, key: str, value: Any) -> Any:
    memo[key] = value
    while len(memo) > MEMO_SIZE:
        memo.popitem(last=False)
    return value


def open_shipment(ref: Any) -> tuple[RunContext, Shipment]:
    """The context of the run behind ``ref`` in this process (opened on first use)."""
    import ray
    from rich.console import Console

    key = ref.hex()
    if key in _OPEN:
        _OPEN.move_to_end(key)
        return _OPEN[key]
    shipment: Shipment = ray.get(ref)
    # Workers print nothing themselves: the driver shows one display for the cluster.
    ctx = shipment.spec.open(console=Console(stderr=True, quiet=True))
    return _remember(_OPEN, key, (ctx, shipment))


def protocol_of(ref: Any) -> Protocol:
    """The protocol object behind ``ref`` (unpickled once per worker)."""
    import ray

    key = ref.hex()
    if key in _PROTOCOLS:
        return _PROTOCOLS[key]
    return _remember(_PROTOCOLS, key, ray.get(ref))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads (the driver's count: Ray sets OMP_NUM_THREADS per task).

    CPU kernels may sum in another order with another thread count; the driver's
    count keeps CPU results bit for bit those of the local executor.
    """
    import torch

    before = torch.get_num_threads()
    if n > 0 and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def shares_cache(ctx: RunContext, marker: str) -> bool:
    """Whether this node sees the driver's cache root (the run's token file is there)."""
    return bool(marker) and (Path(ctx.cache.path) / MARKER_DIR / marker).is_file()


def run_job_task(box: list[Any], job: Job, *dep_results: Any) -> tuple[Any, TaskInfo]:
    """The body of every Ray task: ``protocol.run_job(ctx, job, inputs)`` and how it went.

    ``box`` holds the ObjectRefs of the run's shipment and of the protocol
    (inside a list, so Ray hands the references, not fresh copies of the values,
    to each task);
    ``dep_results`` are the results of ``job.deps``, in order, which Ray
    resolved from their ObjectRefs before starting the task.
    """
    import ray

    ctx, shipment = open_shipment(box[0])
    protocol = protocol_of(box[1])
    inputs = dict(zip(job.deps, dep_results))
    started = time.perf_counter()
    with torch_threads(shipment.torch_threads):
        result = protocol.run_job(ctx, job, inputs)
    info = TaskInfo(
        seconds=time.perf_counter() - started,
        node=ray.get_runtime_context().get_node_id(),
        pid=os.getpid(),
        shared_cache=shares_cache(ctx, shipment.marker),
    )
    return result, info
