"""Connecting to a Ray cluster (or starting a local one), and what its nodes offer.

``address``: empty (or None) starts a local cluster in this process
(``ray.init(num_cpus=..., include_dashboard=False)``) unless ``$RAY_ADDRESS``
names one; ``auto`` joins the cluster ``ray start`` started on this machine;
``HOST:PORT`` joins a cluster's head (GCS port); ``ray://HOST:PORT`` connects
through Ray Client. An address nobody answers at exits 2 naming it, after a
short TCP probe (Ray itself would retry for minutes).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

from bench.errors import UserError

PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class NodeLimits:
    """The largest CPU and GPU counts any one alive node offers (what one task can get)."""

    cpus: float
    gpus: float
    nodes: int


def _host_port(address: str) -> tuple[str, int]:
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(
            f"--ray-address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT "
            "(or nothing, to start a local cluster)"
        )
    return host.strip("[]"), int(port)


def probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Exit 2 naming ``address`` when nothing accepts a TCP connection there."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise UserError(
            f"--ray-address {address!r}: no Ray cluster answers there ({exc.strerror or exc}); "
            "start one with `ray start --head`, or leave --ray-address empty for a local cluster"
        ) from None


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Make this process a Ray driver; True when this call initialised Ray.

    The caller then ends it with ``ray.shutdown()`` (which stops a local cluster
    and only disconnects from a remote one). An already initialised Ray (a
    notebook, a test fixture) is used as it is and left running.
    """
    import ray

    if ray.is_initialized():
        return False
    address = (address or os.environ.get("RAY_ADDRESS") or "").strip()
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    if not address:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
        return True
    if address != "auto":
        probe(address)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, TimeoutError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"--ray-address {address!r}: cannot join the Ray cluster: {first}"
        ) from None
    return True


def node_limits() -> NodeLimits:
    """What the biggest alive node offers (tasks asking more could never be placed)."""
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    cpus = max((float(n["Resources"].get("CPU", 0)) for n in alive), default=0.0)
    gpus = max((float(n["Resources"].get("GPU", 0)) for n in alive), default=0.0)
    return NodeLimits(cpus, gpus, len(alive))
