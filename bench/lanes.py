"""CPU extraction in lanes: each lane decodes its own batch, then runs the network on it.

On a CPU the network's forward and JPEG decoding compete for the same cores.
Splitting the cores into two *lanes*, each with half the threads for both
jobs, lets one lane decode while the other computes, so every core is busy
all the time and no parallel region is ever short of a core (a decode thread
stealing a core from a running fork-join region stalls the whole region).
On the 2-core CI machine a single-threaded forward in each of two lanes is
also faster than one two-threaded forward (AlexNet ~285 vs ~262 img/s,
EfficientNet-Lite0 ~90 vs ~66 img/s eager): see docs/PERFORMANCE.md.

This module holds the parts that do not touch the model: how many lanes,
the per-thread torch thread count, the batch plan lanes take work from, and
the normaliser that writes a decoded image into a lane's input buffer.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from bench.errors import UserError

J = TypeVar("J")


def cpu_lanes(threads: int | None = None) -> tuple[int, int]:
    """``(lanes, threads per lane)`` for ``threads`` cores (default: torch's thread count).

    Two lanes whenever there are two threads or more; ``LEUKOBENCH_CPU_LANES``
    overrides the number of lanes (``1`` gives the plain one-lane pipeline).
    """
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    threads = max(1, int(threads))
    env = os.environ.get("LEUKOBENCH_CPU_LANES", "").strip()
    if env:
        try:
            lanes = int(env)
        except ValueError:
            lanes = 0
        if lanes < 1:
            raise UserError(f"LEUKOBENCH_CPU_LANES must be a positive integer, got {env!r}")
    else:
        lanes = 2 if threads >= 2 else 1
    lanes = min(lanes, threads)
    return lanes, max(1, threads // lanes)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the body with ``n`` torch threads in the calling thread, then restore the count.

    With torch's OpenMP backend ``set_num_threads`` sets the calling thread's
    team size and also records the value for threads started later (lanes call
    it themselves). Use this around a whole lane run in the main thread: on
    exit the main thread's count, and that record, are what they were.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class BatchPlan(Generic[J]):
    """Hands out batches of whole jobs to lanes, in order, thread-safely.

    A batch holds at most ``batch_size`` rows (jobs bigger than that must be
    split beforehand). Near the end batches shrink (``guided``) so the lanes
    finish together instead of one lane computing the last full batch alone;
    they never go below half of ``batch_size`` (smaller batches cost more per
    image: EfficientNet-Lite0 ~12.5 ms at batch 8 against ~8 ms at 16 and 32). ``guided=False`` keeps
    every batch full (a compiled model's fixed shape).
    """

    def __init__(
        self,
        jobs: Sequence[J],
        sizes: Sequence[int],
        batch_size: int,
        lanes: int,
        *,
        guided: bool = True,
    ) -> None:
        if any(s > batch_size for s in sizes):
            raise ValueError("a job has more rows than a batch holds; split it first")
        self._jobs = list(jobs)
        self._sizes = list(sizes)
        self._next = 0
        self._left = sum(self._sizes)
        self.batch_size = batch_size
        self.lanes = max(1, lanes)
        self.guided = guided
        self._lock = threading.Lock()

    def take(self) -> list[J]:
        """The next batch's jobs; empty when everything was handed out."""
        with self._lock:
            target = self.batch_size
            if self.guided and self.lanes > 1:
                share = -(-self._left // self.lanes)
                floor = max(1, self.batch_size // 2)
                target = min(target, max(share, floor))
                if self._left - target < floor and self._left <= self.batch_size:
                    target = self._left  # no crumb of a last batch
            taken: list[J] = []
            rows = 0
            while self._next < len(self._jobs):
                size = self._sizes[self._next]
                if taken and rows + size > target:
                    break
                taken.append(self._jobs[self._next])
                rows += size
                self._next += 1
            self._left -= rows
            return taken


class Normaliser:
    """Writes ``(x / 255 - mean) / std`` of an HWC uint8 image into a float32 buffer.

    The per-channel constants are tiled along a whole image row, so the op
    broadcasts over rows and its inner loop is vectorised: ~3.5x faster than
    broadcasting a 3-vector over the last axis, with the same ``addcmul``
    arithmetic and therefore the same values.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], width: int) -> None:
        import torch

        m = torch.tensor(list(mean), dtype=torch.float32)
        s = torch.tensor(list(std), dtype=torch.float32)
        self.width = width
        self.shift = (-m / s).repeat(width)
        self.scale = (1.0 / (255.0 * s)).repeat(width)

    def into(self, out: Any, img: np.ndarray) -> None:
        """``out`` (``(H, W, 3)`` float32, contiguous) <- normalised ``img`` (``(H, W, 3)`` uint8)."""
        import torch

        h = img.shape[0]
        src = torch.from_numpy(np.ascontiguousarray(img)).view(h, self.width * 3)
        torch.addcmul(self.shift, src, self.scale, out=out.view(h, self.width * 3))
