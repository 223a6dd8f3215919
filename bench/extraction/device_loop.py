"""The general device loop (CUDA, MPS; the CPU in tests): a producer thread feeds the network.

The producer decodes ahead on a pool of CPU workers (a bounded window) and emits
whole batches; on CUDA it also decodes plain JPEGs on the GPU on its own stream
(``bench.extraction.gpu_decode``) and hands the batch over with an event. The main
thread normalises, runs the network and passes the output to the
:class:`bench.extraction.collector.Collector`, pipelined one batch deep.
Augmented copies, masks and other formats take this loop; original JPEGs on CUDA
take :mod:`bench.extraction.jpeg_pipeline`.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.device import autocast
from bench.extraction.collector import Collector, to_host
from bench.extraction.gpu_decode import decode_into, put_rows
from bench.extraction.jobs import Job, Setup, Work
from bench.extraction.jpeg_bytes import is_gpu_decodable, read_file
from bench.extraction.model import forward_fn, prepare_model
from bench.extraction.normalise import Normaliser
from bench.extraction.settings import cuda_autocast_dtype
from bench.extraction.sources import transform_image
from bench.progress import rate_bar

_SENTINEL = object()


@dataclass
class Batch:
    """One batch from the producer thread (see :meth:`DeviceLoop.batches`)."""

    rows: list[int]
    host_pos: list[int]
    host: np.ndarray | None
    encoded: list[tuple[int, Any]]
    device_x: Any = None  # the input, ready: uint8 NCHW on the GPU, or normalised on the CPU
    ready: Any = None  # CUDA event: device_x is complete


class DeviceLoop:
    """Runs one extraction call's missing samples through the producer/consumer loop.

    ``gpu_jpeg``: plain JPEGs of original samples go to the device decoder (CUDA only).
    """

    def __init__(self, setup: Setup, *, gpu_jpeg: bool) -> None:
        import torch

        self.torch = torch
        self.setup = setup
        self.device = setup.device
        self.cuda = setup.cuda
        self.gpu_jpeg = gpu_jpeg
        self.normaliser = Normaliser(setup.backbone.mean, setup.backbone.std)
        self._stream: Any = None

    # -- producer thread ---------------------------------------------------------
    def prepare(self, job: Job) -> list[tuple[int, Any]]:
        """(row, HWC uint8 array | encoded JPEG bytes tensor) for each row of ``job``."""
        sources = self.setup.sources
        if self.gpu_jpeg and all(t.kind == "identity" for _, t in job.rows):
            memo = sources.remembered(job.digest)
            if memo is None:
                data = read_file(job.path)
                if is_gpu_decodable(data):  # a JPEG needing no EXIF rotation
                    enc = self.torch.frombuffer(bytearray(data), dtype=self.torch.uint8)
                    return [(row, enc) for row, _ in job.rows]
        base = sources.image(job)
        return [(row, transform_image(base, t)) for row, t in job.rows]

    def _prepare_many(self, jobs: list[Job]) -> list[tuple[int, Any]]:
        return [pair for job in jobs for pair in self.prepare(job)]

    def batches(self, jobs: list[Job], out: queue.Queue, stop: threading.Event) -> None:
        """Producer thread: decode ahead (bounded window) and emit whole batches.

        Each :class:`Batch` holds the CPU-decoded images (``host``, uint8 NHWC,
        ``None`` when there are none) and the JPEG byte tensors left for the GPU
        (``encoded``), each with its position in the batch.
        """
        setup = self.setup
        size, batch_size, workers = setup.backbone.input_size, setup.batch_size, setup.workers
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="lb-decode") as pool:
                window: collections.deque[Future] = collections.deque()
                it = iter(jobs)
                ahead = max(2 * batch_size, 4 * workers)
                rows: list[int] = []
                arrays: list[tuple[int, np.ndarray]] = []
                encoded: list[tuple[int, Any]] = []

                def flush() -> None:
                    if not rows:
                        return
                    host = None
                    if arrays:
                        host = np.empty((len(arrays), size, size, 3), dtype=np.uint8)
                        for i, (_, img) in enumerate(arrays):
                            host[i] = img
                    batch = Batch(list(rows), [p for p, _ in arrays], host, list(encoded))
                    if self.cuda and encoded:
                        self.decode_on_gpu(batch)  # overlaps the network's previous batch
                    out.put(batch)
                    rows.clear()
                    arrays.clear()
                    encoded.clear()

                # Jobs go to the pool in chunks: reading a JPEG for the GPU takes ~10 us,
                # less than a future's own cost, while a CPU decode takes ~600 us.
                chunk = 32 if self.gpu_jpeg else 1
                ahead = max(1, ahead // chunk)
                while True:
                    while len(window) < ahead:
                        part = list(itertools.islice(it, chunk))
                        if not part:
                            break
                        window.append(pool.submit(self._prepare_many, part))
                    if not window or stop.is_set():
                        break
                    for row, item in window.popleft().result():
                        if isinstance(item, np.ndarray):
                            arrays.append((len(rows), item))
                        else:
                            encoded.append((len(rows), item))  # JPEG bytes, decoded on the GPU
                        rows.append(row)
                        if len(rows) == batch_size:
                            flush()
                flush()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer and re-raised there
            out.put(exc)
        finally:
            out.put(_SENTINEL)

    def decode_on_gpu(self, batch: Batch) -> None:
        """Producer side: the batch's JPEGs (and CPU-decoded rows) into one device tensor.

        Runs on a separate CUDA stream and records an event the consumer waits
        on, so decoding batch k+1 overlaps the network's work on batch k.
        """
        torch = self.torch
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        backbone = self.setup.backbone
        size = backbone.input_size
        with torch.cuda.stream(self._stream):
            x = torch.empty((len(batch.rows), 3, size, size), dtype=torch.uint8, device=self.device)
            x = x.contiguous(memory_format=torch.channels_last)
            if batch.host is not None:
                host = torch.from_numpy(batch.host).permute(0, 3, 1, 2).pin_memory()
                put_rows(x, batch.host_pos, host.to(self.device, non_blocking=True))
            decode_into(x, batch.encoded, size, backbone.interpolation)
            batch.ready = torch.cuda.Event()
            batch.ready.record(self._stream)
        batch.device_x = x

    # -- main thread ---------------------------------------------------------------
    def to_input(self, batch: Batch) -> Any:
        """The batch as the network's normalised input on the device."""
        torch = self.torch
        if batch.device_x is not None:  # decoded on the GPU by the producer thread
            stream = torch.cuda.current_stream()
            stream.wait_event(batch.ready)
            batch.device_x.record_stream(stream)
            return self.normaliser.tensor(batch.device_x)
        if not (self.cuda or self.device == "mps"):
            x = torch.from_numpy(batch.host).permute(0, 3, 1, 2)  # NCHW view of NHWC
            return self.normaliser.tensor(x)
        host = torch.from_numpy(batch.host).permute(0, 3, 1, 2)
        if self.cuda:
            host = host.pin_memory()
        return self.normaliser.tensor(host.to(self.device, non_blocking=True))

    def run(self, work: Work) -> dict[str, Any]:
        """Compute every missing row; returns the run's figures.

        On CUDA the loop is pipelined one batch deep: batch k+1 is launched
        before batch k's features are copied back, and cache entries are
        written by a background thread, so neither waits for the other.
        """
        torch, setup = self.torch, self.setup
        backbone = setup.backbone
        jobs, total = work.jobs, work.total
        q: queue.Queue = queue.Queue(maxsize=3)
        stop = threading.Event()
        producer = threading.Thread(target=self.batches, args=(jobs, q, stop), daemon=True)
        model = prepare_model(backbone, self.device)
        forward, compiled = forward_fn(model, backbone, self.device, setup.batch_size, total)
        amp = autocast(self.device, cuda_autocast_dtype(backbone))  # a no-op off CUDA
        collect = Collector(work, backbone.name)
        wait = compute = 0.0
        t_start = time.perf_counter()
        producer.start()
        try:
            with (
                rate_bar(work.progress, total, work.label) as tracker,
                torch.inference_mode(),
                amp,
            ):
                while True:
                    tw = time.perf_counter()
                    item = q.get()
                    wait += time.perf_counter() - tw
                    if item is _SENTINEL:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    tc = time.perf_counter()
                    out, event = to_host(forward(self.to_input(item)).float(), self.device)
                    collect.push(item.rows, out, event)
                    compute += time.perf_counter() - tc
                    tracker(collect.done)
                collect.flush()
                tracker(collect.done)
        except KeyboardInterrupt:
            collect.rescue()
            raise
        finally:
            stop.set()
            while producer.is_alive():  # unblock a producer waiting on a full queue
                with contextlib.suppress(queue.Empty):
                    q.get(timeout=0.05)
            producer.join()
            collect.close()  # whatever was computed reaches the cache, even on Ctrl-C
        collect.check(wait=True)
        elapsed = time.perf_counter() - t_start
        return {
            "batch_size": setup.batch_size,
            "workers": setup.workers,
            "torch_threads": torch.get_num_threads(),
            "gpu_jpeg": self.gpu_jpeg,
            "compiled": compiled,
            "wait_seconds": round(wait, 4),
            "compute_seconds": round(elapsed, 4),
            "forward_seconds": round(compute, 4),
        }
