"""CUDA extraction straight from JPEG files: read ahead on the CPU, decode on the GPU.

Used by :func:`bench.extraction.extract_features` when every missing sample is an original
(un-augmented, unmasked) image in a JPEG file, the usual case for Model 1.

* Reader threads read whole batches of files into memory (bytes only: the
  file reads release the GIL), a few batches ahead of the GPU.
* The main thread, per batch: one batched nvjpeg decode
  (``torchvision.io.decode_jpeg(device="cuda")``, the hardware JPEG engine on
  A100/H100), resize, normalise, forward under autocast; the features come
  back one batch behind through pinned memory, so the host never waits for
  the network. Files that are not JPEG after all, or that need an EXIF
  rotation, are decoded on the CPU and copied into their batch; a batch that
  nvjpeg refuses is decoded on the CPU, image by image, so a bad file is
  named.
* Cache packs (one per batch) are written by one background thread.

Everything else (augmented copies, masks, other formats) goes through the
general producer/consumer loop, :mod:`bench.extraction.device_loop`.
"""

from __future__ import annotations

import collections
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from bench.device import autocast
from bench.errors import BadImagesError
from bench.extraction.collector import Collector, to_host
from bench.extraction.gpu_decode import decode_into, decode_stack, put_rows
from bench.extraction.jobs import Job, Setup, Work
from bench.extraction.jpeg_bytes import JPEG_SUFFIXES, is_gpu_decodable, read_file
from bench.extraction.model import forward_fn, prepare_model
from bench.extraction.normalise import Normaliser
from bench.extraction.settings import cuda_autocast_dtype
from bench.progress import rate_bar

# Read ahead of the GPU: at most this many batches, and this many bytes of files.
# Reading (~40k files/s) outruns nvjpeg (~25k/s), so the reader finishes early and
# then leaves the GIL to the decoding thread.
READ_AHEAD = 64
READ_AHEAD_BYTES = 256 << 20


def eligible(jobs: list[Job]) -> bool:
    """Whether every job is one original image in a file named like a JPEG."""
    return all(
        job.path.suffix.lower() in JPEG_SUFFIXES and all(t.kind == "identity" for _, t in job.rows)
        for job in jobs
    )


class _Encoded:
    """One batch as read: rows, JPEG byte tensors and CPU-decoded images, by position."""

    __slots__ = ("rows", "encoded", "host", "jobs", "nbytes")

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.encoded: list[tuple[int, Any]] = []
        self.host: list[tuple[int, np.ndarray]] = []
        self.jobs: list[tuple[int, Job]] = []  # (first position, job)
        self.nbytes = 0


class JpegPipeline:
    """Runs one extraction through the read -> nvjpeg -> network pipeline."""

    def __init__(self, setup: Setup) -> None:
        import torch

        self.setup = setup
        self.torch = torch
        self.readers = max(1, setup.readers)
        self.ahead = max(2, self.readers + 1)  # until a batch's size in bytes is known
        self.normaliser = Normaliser(setup.backbone.mean, setup.backbone.std)
        self.stats: dict[str, Any] = {}

    # -- reader threads ----------------------------------------------------------
    def _read_one(self, path: Any) -> Any:
        """The file as a uint8 tensor when it is a JPEG the GPU may decode, else None.

        (Four system calls: torchvision's C++ ``read_file`` was measured slower inside
        the pipeline on an H100 host, 0.045 s of waiting for batches against 0.011 s.)
        """
        torch = self.torch
        try:
            buf = read_file(path)
        except OSError as exc:
            raise BadImagesError([(str(path), f"cannot read: {exc.strerror or exc}")]) from exc
        return torch.frombuffer(buf, dtype=torch.uint8) if is_gpu_decodable(buf) else None

    def _read(self, jobs: list[Job]) -> _Encoded:
        batch = _Encoded()
        for job in jobs:
            pos = len(batch.rows)
            batch.jobs.append((pos, job))
            enc = self._read_one(job.path)
            if enc is not None:
                batch.nbytes += enc.numel()
                for k, (row, _) in enumerate(job.rows):
                    batch.rows.append(row)
                    batch.encoded.append((pos + k, enc))
            else:  # not a JPEG after all, or EXIF-rotated: the CPU decodes it
                img = self.setup.sources.image(job)
                for k, (row, _) in enumerate(job.rows):
                    batch.rows.append(row)
                    batch.host.append((pos + k, img))
        return batch

    # -- main thread ---------------------------------------------------------------
    def to_device(self, batch: _Encoded) -> Any:
        """The batch as uint8 NCHW on the GPU (decoded, resized)."""
        torch, setup = self.torch, self.setup
        size, interpolation = setup.backbone.input_size, setup.backbone.interpolation
        if batch.encoded and not batch.host:  # the usual batch: JPEGs only, no copy into place
            try:
                return decode_stack(batch.encoded, setup.device, size, interpolation)
            except RuntimeError:
                self._decode_on_cpu(batch)
        x = torch.empty((len(batch.rows), 3, size, size), dtype=torch.uint8, device=setup.device)
        x = x.contiguous(memory_format=torch.channels_last)
        if batch.encoded:
            try:
                decode_into(x, batch.encoded, size, interpolation)
            except RuntimeError:
                self._decode_on_cpu(batch)
        if batch.host:
            stack = np.stack([img for _, img in batch.host])
            host = torch.from_numpy(stack).permute(0, 3, 1, 2)
            if x.is_cuda:
                host = host.pin_memory()
            put_rows(x, [p for p, _ in batch.host], host.to(x.device, non_blocking=True))
        return x

    def _decode_on_cpu(self, batch: _Encoded) -> None:
        """nvjpeg refused one of the batch's JPEGs: the CPU decodes them all (and names a bad one)."""
        batch.host = [
            (pos + k, self.setup.sources.image(job))
            for pos, job in batch.jobs
            for k in range(len(job.rows))
        ]
        batch.encoded = []

    def run(self, work: Work, forward: Any, amp: Any) -> None:
        """Compute ``work`` with ``forward`` (the device's model) under ``amp`` (autocast)."""
        torch, setup = self.torch, self.setup
        size, jobs, device = setup.batch_size, work.jobs, setup.device
        parts = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        collect = Collector(work, setup.backbone.name)
        wait = decode = launch = 0.0

        t_start = time.perf_counter()
        pool = ThreadPoolExecutor(self.readers, thread_name_prefix="lb-read")
        window: collections.deque[Future] = collections.deque()
        queued = iter(parts)
        try:
            with (
                rate_bar(work.progress, work.total, work.label) as tracker,
                torch.inference_mode(),
                amp,
            ):
                while True:
                    while len(window) < self.ahead:
                        part = next(queued, None)
                        if part is None:
                            break
                        window.append(pool.submit(self._read, part))
                    if not window:
                        break
                    t0 = time.perf_counter()
                    batch = window.popleft().result()
                    if batch.nbytes:  # batches ahead: as many as READ_AHEAD_BYTES holds
                        fit = READ_AHEAD_BYTES // max(1, batch.nbytes)
                        self.ahead = max(self.readers + 1, min(READ_AHEAD, fit))
                    t1 = time.perf_counter()
                    x = self.to_device(batch)
                    t2 = time.perf_counter()
                    out, event = to_host(forward(self.normaliser.tensor(x)).float(), device)
                    collect.push(batch.rows, out, event)
                    wait += t1 - t0
                    decode += t2 - t1
                    launch += time.perf_counter() - t2
                    tracker(collect.done)
                collect.flush()
                tracker(collect.done)
        except KeyboardInterrupt:
            collect.rescue()
            raise
        finally:
            for fut in window:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            collect.close()  # whatever was computed reaches the cache, even on Ctrl-C
        collect.check(wait=True)
        self.stats = {
            "pipeline": "jpeg-direct",
            "readers": self.readers,
            "wait_seconds": round(wait, 4),
            "decode_seconds": round(decode, 4),
            "forward_seconds": round(launch, 4),
            "compute_seconds": round(time.perf_counter() - t_start, 4),
        }


def run_jpeg_pipeline(setup: Setup, work: Work) -> dict[str, Any]:
    """Compute ``work`` (originals in JPEG files only, see :func:`eligible`); the run's figures."""
    import torch

    backbone = setup.backbone
    model = prepare_model(backbone, setup.device)
    forward, compiled = forward_fn(model, backbone, setup.device, setup.batch_size, work.total)
    pipe = JpegPipeline(setup)
    pipe.run(work, forward, autocast(setup.device, cuda_autocast_dtype(backbone)))
    return {
        "batch_size": setup.batch_size,
        "workers": setup.readers,
        "torch_threads": torch.get_num_threads(),
        "gpu_jpeg": True,
        "compiled": compiled,
        **pipe.stats,
    }
