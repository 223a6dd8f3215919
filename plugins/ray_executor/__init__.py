"""The ``ray`` executor: a suite's jobs as Ray tasks, on a laptop or on a cluster.

Ray does the scheduling, placement, retries and resources: one Ray task per
:class:`bench.protocols.base.Job`, asking for the job's CPUs, GPUs and memory;
a job's dependencies are passed as ObjectRefs (their results travel through
Ray's object store); a task whose worker dies is retried (``max_retries``);
Ctrl-C cancels the outstanding tasks. See docs/distributed.md.

Ray is an optional dependency (``pip install 'leukobench[ray]'``): this module
imports without it, and only asking for the executor needs it.
"""

from __future__ import annotations

from typing import Any

from bench.errors import UserError
from bench.hookspecs import hookimpl
from bench.specs import ExecutorSpec

EXTRA_HINT = "pip install 'leukobench[ray]'"


def make_ray_executor(**options: Any) -> Any:
    """A :class:`plugins.ray_executor.executor.RayExecutor`, or exit 2 naming the extra."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError(f"executor 'ray' needs Ray, which is not installed: {EXTRA_HINT}") from None
    from plugins.ray_executor.executor import RayExecutor

    return RayExecutor(**options)


@hookimpl
def leukobench_executors() -> ExecutorSpec:
    """The ``ray`` executor (options: ``address``, ``num_cpus``, ``max_retries``)."""
    return ExecutorSpec(
        "ray",
        make_ray_executor,
        "every job a Ray task: a local Ray cluster, or --ray-address auto|HOST:PORT|ray://HOST:PORT",
    )
