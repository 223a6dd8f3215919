"""CPU extraction in lanes: each lane decodes its own batch, then runs the network on it.

On a CPU the network's forward and JPEG decoding compete for the same cores.
Splitting the cores into two *lanes*, each with half the threads for both
jobs, lets one lane decode while the other computes, so every core is busy
all the time and no parallel region is ever short of a core (a decode thread
stealing a core from a running fork-join region stalls the whole region).
On the 2-core CI machine a single-threaded forward in each of two lanes is
also faster than one two-threaded forward (AlexNet ~285 vs ~262 img/s,
EfficientNet-Lite0 ~90 vs ~66 img/s eager): see docs/PERFORMANCE.md.

This module holds how many lanes, the per-thread torch thread count, the batch
plan lanes take work from, and the lane loop itself (:func:`run_lanes`); each lane
normalises its decoded images into its own input buffer
(:meth:`bench.extraction.normalise.Normaliser.into`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from bench.errors import UserError
from bench.extraction.chunking import ChunkedForward, chunk_rows
from bench.extraction.jobs import Job, RowFiller, Setup, Work
from bench.extraction.model import forward_fn, prepare_model
from bench.extraction.normalise import Normaliser
from bench.extraction.sources import transform_image
from bench.progress import rate_bar

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
        return self.take_batch()[0]

    def take_batch(self) -> tuple[list[J], bool]:
        """``(jobs, tail)``: the next batch, and whether the guided tail shrank it."""
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
            return taken, target < self.batch_size


def split_jobs(jobs: list[Job], batch_size: int) -> list[Job]:
    """Jobs with at most ``batch_size`` rows each (a source's rows may then span batches)."""
    out: list[Job] = []
    for job in jobs:
        for i in range(0, len(job.rows), batch_size):
            out.append(Job(job.source, job.path, job.digest, job.rows[i : i + batch_size]))
    return out


def fill_batch(
    x: Any, jobs: list[Job], setup: Setup, normaliser: Normaliser, pool: Any
) -> list[int]:
    """Decode ``jobs`` into the lane's NHWC float buffer ``x``; returns the rows, in order."""
    starts, rows, at = [], [], 0
    for job in jobs:
        starts.append(at)
        rows.extend(row for row, _ in job.rows)
        at += len(job.rows)
    sources = setup.sources

    def one(i: int) -> None:
        job = jobs[i]
        base = sources.image(job)
        for k, (_, t) in enumerate(job.rows):
            normaliser.into(x[starts[i] + k], transform_image(base, t))

    if pool is None:
        for i in range(len(jobs)):
            one(i)
    else:
        list(pool.map(one, range(len(jobs))))
    return rows


def run_lanes(setup: Setup, work: Work) -> dict[str, Any]:
    """CPU: every lane takes a batch, decodes it, runs the network, stores the rows.

    Lanes write their rows' cache entries themselves after each batch, so an
    interrupted run keeps every finished batch. On Ctrl-C the lanes finish the
    batch in hand and stop. Returns the run's figures.
    """
    import torch

    n_lanes, lane_threads = cpu_lanes()
    batch_size, backbone = setup.batch_size, setup.backbone
    jobs = split_jobs(work.jobs, batch_size)
    total = work.total
    cache, filler = work.cache, RowFiller(work.keys, work.todo, work.features)
    size = backbone.input_size
    normaliser = Normaliser(backbone.mean, backbone.std)
    model = prepare_model(backbone, setup.device)
    stop = threading.Event()
    errors: list[BaseException] = []
    lock = threading.Lock()
    timing = {"decode": 0.0, "forward": 0.0, "store": 0.0}
    done = 0

    def lane() -> None:
        nonlocal done
        torch.set_num_threads(lane_threads)
        pool = None
        if lane_threads > 1:
            pool = ThreadPoolExecutor(
                lane_threads,
                thread_name_prefix="lb-decode",
                initializer=torch.set_num_threads,
                initargs=(1,),
            )
        x = torch.empty((batch_size, size, size, 3), dtype=torch.float32)
        try:
            with torch.inference_mode():
                while not stop.is_set():
                    part, tail = plan.take_batch()
                    if not part:
                        return
                    t0 = time.perf_counter()
                    rows = fill_batch(x, part, setup, normaliser, pool)
                    t1 = time.perf_counter()
                    inp = x[: len(rows)].permute(0, 3, 1, 2)  # NCHW view of NHWC
                    vecs = chunked(inp, tail=tail).float().numpy()
                    t2 = time.perf_counter()
                    filler.fill(rows, vecs)
                    if cache is not None:  # the batch in one pack
                        cache.put_many(filler.computed(rows), backbone.name)
                    t3 = time.perf_counter()
                    with lock:
                        done += len(rows)
                        timing["decode"] += t1 - t0
                        timing["forward"] += t2 - t1
                        timing["store"] += t3 - t2
        except BaseException as exc:  # noqa: BLE001 - re-raised by the main thread
            errors.append(exc)
            stop.set()
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    t_start = time.perf_counter()
    with torch_threads(lane_threads):
        forward, compiled = forward_fn(model, backbone, setup.device, batch_size, total)
        if compiled:  # compile once, here, for the lanes' thread count and shape
            with torch.inference_mode():
                forward(
                    torch.zeros((batch_size, 3, size, size)).contiguous(
                        memory_format=torch.channels_last
                    )
                )
        chunk, t_probe = None, time.perf_counter()
        if not compiled:  # a compiled model keeps its one shape
            root = None if cache is None else cache.root
            chunk = chunk_rows(
                model,
                backbone,
                batch_size=batch_size,
                threads=lane_threads,
                n_images=total,
                root=root,
            )
        probe_s = time.perf_counter() - t_probe  # once per machine (the verdict is kept)
        chunked = ChunkedForward(forward, chunk)
        plan = BatchPlan(
            jobs,
            [len(j.rows) for j in jobs],
            batch_size,
            n_lanes,
            guided=not compiled,  # a compiled model pads every batch to full size
        )
        threads = [
            threading.Thread(target=lane, name=f"lb-lane-{i}", daemon=True) for i in range(n_lanes)
        ]
        try:
            with rate_bar(work.progress, total, work.label) as tracker:
                for th in threads:
                    th.start()
                for th in threads:
                    while th.is_alive():
                        th.join(timeout=0.1)
                        tracker(done)
                tracker(done)
        finally:
            stop.set()  # Ctrl-C: lanes finish (and store) the batch in hand, then stop
            for th in threads:
                if th.ident is not None:  # (Ctrl-C may come before the last one started)
                    th.join()
    if errors:
        raise errors[0]
    elapsed = time.perf_counter() - t_start - probe_s
    return {
        "batch_size": batch_size,
        "lanes": n_lanes,
        "lane_threads": lane_threads,
        "torch_threads": n_lanes * lane_threads,
        "gpu_jpeg": False,
        "compiled": compiled,
        "forward_chunk": chunk or batch_size,
        "chunk_probe_seconds": round(probe_s, 4),
        "decode_seconds": round(timing["decode"], 4),
        "forward_seconds": round(timing["forward"], 4),
        "store_seconds": round(timing["store"], 4),
        "wait_seconds": round(timing["decode"] / n_lanes, 4),
        "compute_seconds": round(elapsed, 4),
    }
