"""Computed batches back from the device: rows filled, one cache pack per batch written.

Shared by the general device loop and the CUDA JPEG pipeline. On CUDA a batch's
features are copied to pinned host memory without waiting (:func:`to_host`) and
taken one batch later, so the host never waits for the network.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from bench.extraction.jobs import RowFiller, Work


def to_host(out: Any, device: str) -> tuple[Any, Any]:
    """Start copying ``out`` to the host: ``(host tensor, CUDA event to wait on | None)``."""
    import torch

    if device.startswith("cuda"):  # through pinned memory, without waiting for the network
        host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
        host.copy_(out, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return host, event
    if device == "mps":
        return out.to("cpu"), None
    return out, None


class Collector:
    """Takes computed batches: fills their rows, hands one pack per batch to a writer thread.

    One writer: more were measured slower on an H200 (they fight the decode thread
    for the GIL).
    """

    def __init__(self, work: Work, backbone: str) -> None:
        self.filler = RowFiller(work.keys, work.todo, work.features)
        self.cache = work.cache
        self.backbone = backbone
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="lb-cache") if work.cache else None
        self.writes: list[Future] = []
        self.done = 0
        self.in_flight: tuple[list[int], Any, Any] | None = None

    def push(self, rows: list[int], out: Any, event: Any) -> None:
        """A batch just launched: it is taken once the next one is launched (or at once
        without an event), so the host never waits for the device."""
        if self.in_flight is not None:
            self.take(*self.in_flight)
            self.in_flight = None
        if event is None:
            self.take(rows, out, event)
        else:
            self.in_flight = (rows, out, event)
        self.check()

    def flush(self) -> None:
        """Take the batch still in flight."""
        if self.in_flight is not None:
            self.take(*self.in_flight)
            self.in_flight = None

    def rescue(self) -> None:
        """On Ctrl-C: keep the batch the device has already computed, if it can be had."""
        with contextlib.suppress(Exception):
            self.flush()

    def take(self, rows: list[int], out: Any, event: Any) -> None:
        """Batch ``rows`` computed as ``out`` (a CPU tensor, complete once ``event`` is)."""
        if event is not None:
            event.synchronize()
        self.filler.fill(rows, out.numpy())
        if self.writer is not None:
            computed = self.filler.computed(rows)
            self.writes.append(self.writer.submit(self.cache.put_many, computed, self.backbone))
        self.done += len(rows)

    def check(self, wait: bool = False) -> None:
        """Re-raise a failed cache write (a full disk stops the run); ``wait``: all of them."""
        while self.writes and (wait or self.writes[0].done()):
            self.writes.pop(0).result()

    def close(self) -> None:
        """Let every write started finish (also on Ctrl-C)."""
        if self.writer is not None:
            self.writer.shutdown(wait=True)
