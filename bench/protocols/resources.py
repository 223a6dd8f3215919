"""What one job asks of the machine that runs it (:class:`Resources`; also in ``.base``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resources:
    """What one job needs from the machine that runs it (executors map this to their own)."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_bytes: int | None = None
