"""Feature extraction: images -> backbone feature vectors, cached and fast.

Pipeline per sample: decode + resize to the backbone's input size (once per
source image and run, see :class:`bench.extraction.sources.DecodedImages`),
optional mask, the sample's augmentation transform, normalisation, forward pass.
Only samples whose features are missing from the :class:`FeatureCache` are
decoded and computed; results are written to the cache batch by batch, so an
interrupted run resumes where it stopped.

:func:`extract_features` finds the missing samples, groups them into jobs (one per
source image, :mod:`bench.extraction.jobs`) and hands them to one of three strategies:

* the CPU: lanes that each decode a batch and run the network on it
  (:mod:`bench.extraction.cpu_lanes`);
* CUDA, every missing sample an original JPEG: read ahead on the CPU, decode with
  nvjpeg, run under autocast (:mod:`bench.extraction.jpeg_pipeline`);
* anything else on CUDA or MPS: a producer thread decoding ahead for the device
  (:mod:`bench.extraction.device_loop`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.backbone import Backbone
from bench.data.decode import DECODERS
from bench.data.imageset import Samples
from bench.data.mask import Rect, mask_fns
from bench.device import cpu_threads, resolve_device
from bench.errors import UserError
from bench.extraction.cpu_lanes import run_lanes
from bench.extraction.device_loop import DeviceLoop
from bench.extraction.jobs import Job, Setup, Work
from bench.extraction.jpeg_pipeline import eligible, run_jpeg_pipeline
from bench.extraction.keys import sample_keys
from bench.extraction.settings import DEFAULT_READERS, default_batch_size, gpu_jpeg_available
from bench.extraction.sources import DecodedImages, SourceImages
from bench.feature_cache import FeatureCache
from bench.malloc_tuning import tuned_malloc

# Which strategy runs where. Tests set CPU_LANES = False to run the CPU through the
# general device loop, and add "cpu" to JPEG_DIRECT_DEVICES to run the CUDA JPEG
# pipeline's code on the CPU (with torchvision's CPU decoder).
CPU_LANES = True
JPEG_DIRECT_DEVICES: tuple[str, ...] = ("cuda",)


@dataclass
class ExtractionResult:
    """Features aligned with the samples, and how they were obtained."""

    features: np.ndarray
    n_cached: int
    n_computed: int
    seconds: float
    images_per_s: float
    device: str
    n_decoded: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block (and back on after).

    A full collection walks every object of the process (~400k with torch
    loaded): 0.1-0.2 s, longer than a whole GPU extraction of Aria. The
    pipeline makes almost no reference cycles, so nothing piles up meanwhile.
    """
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def extract_features(
    samples: Samples,
    backbone: Backbone,
    *,
    digests: Sequence[str],
    cache: FeatureCache | None,
    mask: Sequence[Rect] | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    workers: int | None = None,
    progress: bool = True,
    decoded: DecodedImages | None = None,
    dtype: Any = np.float32,
    decoder: str = "pil",
) -> ExtractionResult:
    """Features ``(len(samples), backbone.feature_dim)`` for every sample.

    ``digests[i]`` is the content SHA-256 of ``samples.imageset.paths[i]``.
    ``decoder`` is ``"pil"`` (exact, the default) or ``"fast"``
    (:func:`bench.data.decode.decode_resized_fast`, CPU only, own cache keys).
    """
    if decoder not in DECODERS:
        raise UserError(f"unknown decoder {decoder!r} (choose from {', '.join(DECODERS)})")
    with gc_paused():
        t0 = time.perf_counter()
        imageset = samples.imageset
        if len(digests) != len(imageset):
            raise ValueError(f"{len(digests)} digests for {len(imageset)} images")
        dev = resolve_device(device)
        n = len(samples)
        mkey, mask_fn = mask_fns(mask)
        keys = sample_keys(samples, backbone, digests, mask, dev, decoder)
        features = np.empty((n, backbone.feature_dim), dtype=np.float32)
        have = cache.get_many(dict.fromkeys(keys)) if cache is not None else {}
        todo: dict[str, list[int]] = {}
        for row, key in enumerate(keys):
            if key in have:
                features[row] = have[key]
            else:
                todo.setdefault(key, []).append(row)
        n_cached = n - sum(len(r) for r in todo.values())
        del have
        jobs: dict[int, Job] = {}
        for rows in todo.values():
            row = rows[0]
            src = int(samples.source[row])
            job = jobs.get(src)
            if job is None:
                job = jobs[src] = Job(src, imageset.paths[src], digests[src], [])
            job.rows.append((row, samples.transforms[row]))
        stats: dict[str, Any] = {}
        n_decoded = 0
        if jobs:
            work = Work(list(jobs.values()), keys, todo, features, cache, progress, backbone.name)
            sources = SourceImages(
                backbone,
                mask_fn=mask_fn,
                mkey=mkey,
                decoded=decoded,
                fast=decoder == "fast" and not dev.startswith("cuda"),
            )
            setup = _setup(backbone, dev, batch_size, workers, sources)
            stats = run_strategy(setup, work, masked=mask_fn is not None)
            n_decoded = setup.sources.n_decoded
        seconds = time.perf_counter() - t0
    n_computed = len(todo)
    rate = n_computed / stats["compute_seconds"] if stats.get("compute_seconds") else 0.0
    return ExtractionResult(
        features=features if np.dtype(dtype) == np.float32 else features.astype(dtype),
        n_cached=n_cached,
        n_computed=n_computed,
        seconds=seconds,
        images_per_s=rate,
        device=dev,
        n_decoded=n_decoded,
        stats=stats,
    )


def _setup(
    backbone: Backbone,
    device: str,
    batch_size: int | None,
    workers: int | None,
    sources: SourceImages,
) -> Setup:
    import torch  # noqa: F401 - loaded before any strategy's threads start

    size = batch_size or default_batch_size(backbone, device)
    if size < 1:
        raise UserError(f"batch size must be >= 1, got {size}")
    return Setup(
        backbone=backbone,
        device=device,
        batch_size=size,
        workers=max(1, int(workers or min(8, cpu_threads()))),
        # the JPEG pipeline's reader threads: files are only read there, so few are needed
        readers=max(1, int(workers or DEFAULT_READERS)),
        sources=sources,
    )


def run_strategy(setup: Setup, work: Work, *, masked: bool) -> dict[str, Any]:
    """Compute ``work`` with the strategy for its device and jobs; returns the run's figures."""
    if setup.device == "cpu" and CPU_LANES:
        with tuned_malloc():  # activation buffers stay in the heap (bench/malloc_tuning.py)
            return run_lanes(setup, work)
    if jpeg_direct(setup.device, work.jobs, masked=masked):
        return run_jpeg_pipeline(setup, work)
    gpu_jpeg = setup.cuda and not masked and gpu_jpeg_available()
    return DeviceLoop(setup, gpu_jpeg=gpu_jpeg).run(work)


def jpeg_direct(device: str, jobs: list[Job], *, masked: bool) -> bool:
    """Whether the CUDA JPEG pipeline takes these jobs (``LEUKOBENCH_GPU_PIPELINE=classic``
    sends them to the general loop)."""
    mode = os.environ.get("LEUKOBENCH_GPU_PIPELINE", "auto").strip().lower()
    if mode not in ("auto", "classic"):
        raise UserError(f"LEUKOBENCH_GPU_PIPELINE={mode!r}: use 'auto' or 'classic'")
    return (
        mode == "auto"
        and device.split(":", 1)[0] in JPEG_DIRECT_DEVICES
        and not masked
        and gpu_jpeg_available()
        and eligible(jobs)
    )
