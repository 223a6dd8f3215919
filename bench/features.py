"""Feature extraction: images -> backbone feature vectors, cached and fast.

Pipeline per sample: decode + resize to the backbone's input size (once per
source image and run, see :class:`DecodedImages`), optional mask, the
sample's augmentation transform, normalisation, forward pass. Only samples
whose features are missing from the :class:`FeatureCache` are decoded and
computed; results are written to the cache batch by batch, so an interrupted
run resumes where it stopped.

Decoding runs in a background thread pool that prepares whole uint8 batches
while the network computes the previous one. The batch goes to the network in
NHWC memory order (``channels_last``), normalised in one fused step.
On CUDA: bf16 autocast, pinned host memory, non-blocking copies, and JPEG
files decoded on the GPU with ``torchvision.io.decode_jpeg(device="cuda")``
in batches (other formats, masks and augmented copies go through the CPU
path), a one-batch-deep pipeline and cache writes in a background thread.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.backbone import Backbone
from bench.data.decode import DECODERS, decode_resized, decode_resized_fast
from bench.data.imageset import Samples, Transform
from bench.device import cpu_threads, resolve_device
from bench.errors import BadImagesError, UserError
from bench.feature_cache import FeatureCache, feature_key
from bench.gpu_pipeline import JpegPipeline, eligible
from bench.jpeg_bytes import is_gpu_decodable, read_file
from bench.lanes import BatchPlan, Normaliser, cpu_lanes, torch_threads
from bench.malloc_tuning import tuned_malloc

# The in-run memo's images are read-only on purpose; the normaliser only reads them.
warnings.filterwarnings(
    "ignore", message="The given NumPy array is not writable", module=r"bench\.(features|lanes)"
)

Rects = Sequence[Sequence[float]]
_SENTINEL = object()


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


class DecodedImages:
    """In-run memo of decoded, resized uint8 source images.

    Keyed by ``(size, interpolation, mask key)`` and the image content digest,
    so a second backbone with the same input size, or every augmented copy of
    an image, reuses one decode. Holds at most ``max_bytes`` (later images are
    simply not memoised once full).
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._store: dict[tuple[int, str, str], dict[str, np.ndarray]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.decodes = 0

    def get(self, view: tuple[int, str, str], digest: str) -> np.ndarray | None:
        with self._lock:
            img = self._store.get(view, {}).get(digest)
            if img is not None:
                self.hits += 1
            return img

    def put(self, view: tuple[int, str, str], digest: str, img: np.ndarray) -> None:
        with self._lock:
            self.decodes += 1
            slot = self._store.setdefault(view, {})
            if digest in slot or self.nbytes + img.nbytes > self.max_bytes:
                return
            img.setflags(write=False)
            slot[digest] = img
            self.nbytes += img.nbytes

    def __len__(self) -> int:
        return sum(len(v) for v in self._store.values())


def _mask_fns(mask: Rects | None) -> tuple[str, Callable[[np.ndarray], np.ndarray] | None]:
    if not mask:
        return "", None
    from bench.data.mask import apply_mask, mask_key

    key = mask_key(mask)
    return key, (lambda img: apply_mask(img, mask)) if key else None


def _transform_fn() -> Callable[[np.ndarray, Transform], np.ndarray]:
    def apply(img: np.ndarray, t: Transform) -> np.ndarray:
        if t.kind == "identity":
            return img
        from bench.data.augment import apply_transform

        return apply_transform(img, t)

    return apply


@dataclass
class _Job:
    """One source image and the missing samples (row, transform) derived from it."""

    source: int
    path: Path
    digest: str
    rows: list[tuple[int, Transform]]


# Below this, compiling costs more than it saves: EfficientNet-Lite0 in the CPU lanes,
# malloc tuned, ran 264 img/s compiled vs ~210 eager after a ~4 s compile (break-even
# ~4,100 images; docs/PERFORMANCE.md).
COMPILE_MIN_IMAGES = 5000
# Reader threads of the CUDA JPEG pipeline when ``workers`` is not given.
DEFAULT_READERS = 1


def default_batch_size(backbone: Backbone, device: str) -> int:
    """A batch size that keeps the device busy: the plugin's CPU hint, 256 on CUDA."""
    if device.startswith("cuda"):
        return 256
    hint = backbone.extra.get("cpu_batch_size")
    if hint:
        return int(hint)
    return 32 if backbone.input_size <= 256 else 8


def want_compile(backbone: Backbone, device: str, n_images: int) -> bool:
    """Whether to ``torch.compile`` the extractor for this run.

    ``LEUKOBENCH_COMPILE=1``/``0`` forces it; by default (``auto``) only on
    CPU, for backbones whose plugin measured a gain (``extra["cpu_compile"]``),
    when at least :data:`COMPILE_MIN_IMAGES` images are to be computed.
    """
    mode = os.environ.get("LEUKOBENCH_COMPILE", "auto").strip().lower()
    if mode in ("1", "true", "yes", "on"):
        return True
    if mode in ("0", "false", "no", "off"):
        return False
    return (
        device == "cpu"
        and bool(backbone.extra.get("cpu_compile"))
        and n_images >= COMPILE_MIN_IMAGES
    )


def cuda_autocast_dtype(backbone: Backbone) -> str:
    """The autocast dtype for ``backbone`` on CUDA: the plugin's ``cuda_autocast`` or bfloat16."""
    dtype = str(backbone.extra.get("cuda_autocast", "bfloat16"))
    if dtype not in ("bfloat16", "float16", "float32"):
        raise UserError(f"backbone {backbone.name}: cuda_autocast {dtype!r} is not a known dtype")
    return dtype


def numerics_tag(device: str, backbone: Backbone | None = None) -> str:
    """What the device's arithmetic adds to a feature's identity.

    CPU features (eager float32, PIL decode) keep the plain key. CUDA features
    are computed under autocast (bf16 unless the plugin asks otherwise) from
    nvjpeg-decoded, GPU-resized pixels, and MPS in its own float32 kernels:
    close to the CPU's (docs/PERFORMANCE.md states the tolerance) but not
    bit-identical, so they are cached under their own keys.
    """
    if device.startswith("cuda"):
        dtype = cuda_autocast_dtype(backbone) if backbone is not None else "bfloat16"
        return "cuda-bf16" if dtype == "bfloat16" else f"cuda-{dtype}"
    if device == "mps":
        return "mps-fp32"
    return ""


def sample_keys(
    samples: Samples,
    backbone: Backbone,
    digests: Sequence[str],
    mask: Rects | None = None,
    device: str = "cpu",
    decoder: str = "pil",
) -> list[str]:
    """The feature-cache key of every sample (backbone, numerics, transform, mask, image)."""
    mkey, _ = _mask_fns(mask)
    ident = backbone.cache_identity()
    tag = numerics_tag(device, backbone)
    if tag:
        ident = f"{ident}|{tag}"
    elif decoder != "pil":  # CPU pixels from another decoder (on CUDA JPEGs decode on the GPU)
        ident = f"{ident}|decoder={decoder}"
    return [
        feature_key(ident, t.key(), mkey, digests[int(s)])
        for s, t in zip(samples.source, samples.transforms)
    ]


@contextlib.contextmanager
def gc_paused():
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
    mask: Rects | None = None,
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
    with gc_paused():
        return _extract(
            samples,
            backbone,
            digests=digests,
            cache=cache,
            mask=mask,
            device=device,
            batch_size=batch_size,
            workers=workers,
            progress=progress,
            decoded=decoded,
            dtype=dtype,
            decoder=decoder,
        )


def _extract(
    samples: Samples,
    backbone: Backbone,
    *,
    digests: Sequence[str],
    cache: FeatureCache | None,
    mask: Rects | None,
    device: str,
    batch_size: int | None,
    workers: int | None,
    progress: bool,
    decoded: DecodedImages | None,
    dtype: Any,
    decoder: str,
) -> ExtractionResult:
    if decoder not in DECODERS:
        raise UserError(f"unknown decoder {decoder!r} (choose from {', '.join(DECODERS)})")
    t0 = time.perf_counter()
    imageset = samples.imageset
    if len(digests) != len(imageset):
        raise ValueError(f"{len(digests)} digests for {len(imageset)} images")
    dev = resolve_device(device)
    n = len(samples)
    mkey, mask_fn = _mask_fns(mask)
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
    jobs: dict[int, _Job] = {}
    for rows in todo.values():
        row = rows[0]
        src = int(samples.source[row])
        job = jobs.get(src)
        if job is None:
            job = jobs[src] = _Job(src, imageset.paths[src], digests[src], [])
        job.rows.append((row, samples.transforms[row]))
    stats: dict[str, Any] = {}
    n_decoded = 0
    if jobs:
        runner = _Runner(
            backbone,
            dev,
            batch_size or default_batch_size(backbone, dev),
            workers,
            mask_fn,
            mkey,
            decoded,
            decoder,
        )
        work = _Work(list(jobs.values()), keys, todo, features, cache, progress, backbone.name)
        n_decoded = runner.run(work)
        stats = runner.stats
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


class _Runner:
    """Runs the decode -> forward pipeline for the missing samples of one call."""

    cpu_lanes = True  # False runs the CPU through the GPU's producer/consumer loop (tests)
    # devices on which original JPEGs take bench.gpu_pipeline (tests add "cpu")
    jpeg_direct_devices: tuple[str, ...] = ("cuda",)

    def __init__(
        self,
        backbone: Backbone,
        device: str,
        batch_size: int,
        workers: int | None,
        mask_fn: Callable[[np.ndarray], np.ndarray] | None,
        mkey: str,
        decoded: DecodedImages | None,
        decoder: str = "pil",
    ) -> None:
        import torch

        self.torch = torch
        self.backbone = backbone
        self.device = device
        self.cuda = device.startswith("cuda")
        if batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        default_workers = min(8, cpu_threads())
        self.workers = max(1, int(workers or default_workers))
        # bench.gpu_pipeline's reader threads: files are only read there, so few are needed
        self.readers = max(1, int(workers or DEFAULT_READERS))
        self.mask_fn = mask_fn
        fast = decoder == "fast" and not self.cuda
        # the in-run memo keeps the two decoders' pixels apart
        self.view = (backbone.input_size, backbone.interpolation, mkey + ("|fast" if fast else ""))
        self.decode = decode_resized_fast if fast else decode_resized
        self.decoded = decoded
        self.transform = _transform_fn()
        self.gpu_jpeg = self.cuda and mask_fn is None and _gpu_jpeg_available()
        self.stats: dict[str, Any] = {}
        self._norm: dict[str, tuple[Any, Any]] = {}
        self._stream: Any = None
        self._n_decoded = 0
        # CPU: lanes, each decoding its own batch and then running the network on it
        # (bench/lanes.py); CUDA and MPS: a decode thread feeding the device.
        # (``workers`` sizes the CUDA/MPS decode pool; a lane decodes with its own cores.)
        self.lanes, self.lane_threads = cpu_lanes() if device == "cpu" else (1, 0)
        self._count_lock = threading.Lock()
        self._pending: dict[str, threading.Event] = {}

    # -- decoding (worker threads) ----------------------------------------
    def _base_image(self, job: _Job) -> np.ndarray:
        if self.decoded is None:
            return self._decode_base(job)
        img = self.decoded.get(self.view, job.digest)
        if img is not None:
            return img
        # Two lanes may want one source at once (its copies span batches): one decodes.
        with self._count_lock:
            pending = self._pending.get(job.digest)
            mine = pending is None
            if mine:
                pending = self._pending[job.digest] = threading.Event()
        if not mine:
            pending.wait()
            img = self.decoded.get(self.view, job.digest)
            if img is not None:
                return img
            return self._decode_base(job)  # the memo was full
        try:
            img = self._decode_base(job)
            self.decoded.put(self.view, job.digest, img)
            return img
        finally:
            with self._count_lock:
                del self._pending[job.digest]
            pending.set()

    def _decode_base(self, job: _Job) -> np.ndarray:
        try:
            img = self.decode(job.path, self.backbone.input_size, self.backbone.interpolation)
        except (OSError, ValueError) as exc:
            raise BadImagesError([(str(job.path), f"cannot decode: {exc}")]) from exc
        if self.mask_fn is not None:
            img = self.mask_fn(img)
        with self._count_lock:
            self._n_decoded += 1
        return img

    def _prepare(self, job: _Job) -> list[tuple[int, Any]]:
        """(row, HWC uint8 array | encoded JPEG bytes tensor) for each row of ``job``."""
        if self.gpu_jpeg and all(t.kind == "identity" for _, t in job.rows):
            memo = self.decoded.get(self.view, job.digest) if self.decoded else None
            if memo is None:
                data = read_file(job.path)
                if is_gpu_decodable(data):  # a JPEG needing no EXIF rotation
                    enc = self.torch.frombuffer(bytearray(data), dtype=self.torch.uint8)
                    return [(row, enc) for row, _ in job.rows]
        base = self._base_image(job)
        return [(row, self.transform(base, t)) for row, t in job.rows]

    def _prepare_many(self, jobs: list[_Job]) -> list[tuple[int, Any]]:
        return [pair for job in jobs for pair in self._prepare(job)]

    def _batches(self, jobs: list[_Job], out: queue.Queue, stop: threading.Event) -> None:
        """Producer thread: decode ahead (bounded window) and emit whole batches.

        Each :class:`_Batch` holds the CPU-decoded images (``host``, uint8 NHWC,
        ``None`` when there are none) and the JPEG byte tensors left for the GPU
        (``encoded``), each with its position in the batch.
        """
        size = self.backbone.input_size
        try:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="lb-decode") as pool:
                window: collections.deque[Future] = collections.deque()
                it = iter(jobs)
                ahead = max(2 * self.batch_size, 4 * self.workers)
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
                    batch = _Batch(list(rows), [p for p, _ in arrays], host, list(encoded))
                    if self.cuda and encoded:
                        self._decode_on_gpu(batch)  # overlaps the network's previous batch
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
                        if len(rows) == self.batch_size:
                            flush()
                flush()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer and re-raised there
            out.put(exc)
        finally:
            out.put(_SENTINEL)

    # -- forward (main thread) ---------------------------------------------
    def _model(self) -> Any:
        torch = self.torch
        model = self.backbone.extractor.eval()
        if self.cuda or self.device == "mps":
            model = model.to(self.device)
        model = model.to(memory_format=torch.channels_last)
        return model

    def _forward_fn(self, model: Any, total: int) -> Callable[[Any], Any]:
        """The eager model, or a compiled one (fixed batch shape, eager fallback on failure)."""
        self.compiled = False
        if not want_compile(self.backbone, self.device, total):
            return model
        torch = self.torch
        try:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True  # fold weights/BN into constants (inference only)
            compiled = torch.compile(model, dynamic=False)
        except Exception as exc:  # noqa: BLE001 - compiling is an optimisation only
            warnings.warn(f"torch.compile unavailable ({exc}); running eager", stacklevel=2)
            return model
        state = {"ok": None}
        full = self.batch_size

        def forward(x: Any) -> Any:
            if state["ok"] is False:
                return model(x)
            n = x.shape[0]
            if n < full:  # pad to the compiled shape instead of recompiling
                pad = x.new_zeros((full - n, *x.shape[1:])).contiguous(
                    memory_format=torch.channels_last
                )
                x = torch.cat([x, pad]).contiguous(memory_format=torch.channels_last)
            try:
                out = compiled(x)
                state["ok"] = True
            except Exception as exc:  # noqa: BLE001
                if state["ok"]:
                    raise
                warnings.warn(f"torch.compile failed ({exc}); running eager", stacklevel=2)
                state["ok"] = False
                out = model(x)
            return out[:n]

        self.compiled = True
        return forward

    def _normalise(self, x: Any) -> Any:
        """uint8 NCHW (any memory format) -> normalised float32, channels_last."""
        shift, scale = self._norm_constants(str(x.device))
        return self.torch.addcmul(shift, x.float(), scale).contiguous(
            memory_format=self.torch.channels_last
        )

    def _norm_constants(self, device: str) -> tuple[Any, Any]:
        """``(-mean/std, 1/(255 std))`` as (1, 3, 1, 1) tensors on ``device``, made once."""
        if device not in self._norm:  # once per device: a host->device copy would sync
            torch = self.torch
            mean = torch.tensor(self.backbone.mean, dtype=torch.float32).view(1, 3, 1, 1)
            std = torch.tensor(self.backbone.std, dtype=torch.float32).view(1, 3, 1, 1)
            self._norm[device] = ((-mean / std).to(device), (1.0 / (255.0 * std)).to(device))
        return self._norm[device]

    def _to_input(self, batch: _Batch) -> Any:
        """The batch as the network's normalised input on the device."""
        torch = self.torch
        if batch.device_x is not None:  # decoded on the GPU by the producer thread
            stream = torch.cuda.current_stream()
            stream.wait_event(batch.ready)
            batch.device_x.record_stream(stream)
            return self._normalise(batch.device_x)
        if not (self.cuda or self.device == "mps"):
            x = torch.from_numpy(batch.host).permute(0, 3, 1, 2)  # NCHW view of NHWC
            return self._normalise(x)
        host = torch.from_numpy(batch.host).permute(0, 3, 1, 2)
        if self.cuda:
            host = host.pin_memory()
        return self._normalise(host.to(self.device, non_blocking=True))

    def _decode_on_gpu(self, batch: _Batch) -> None:
        """Producer side: the batch's JPEGs (and CPU-decoded rows) into one device tensor.

        Runs on a separate CUDA stream and records an event the consumer waits
        on, so decoding batch k+1 overlaps the network's work on batch k.
        """
        torch = self.torch
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        size = self.backbone.input_size
        with torch.cuda.stream(self._stream):
            x = torch.empty((len(batch.rows), 3, size, size), dtype=torch.uint8, device=self.device)
            x = x.contiguous(memory_format=torch.channels_last)
            if batch.host is not None:
                host = torch.from_numpy(batch.host).permute(0, 3, 1, 2).pin_memory()
                _put_rows(x, batch.host_pos, host.to(self.device, non_blocking=True))
            self._gpu_decode_into(x, batch.encoded)
            batch.ready = torch.cuda.Event()
            batch.ready.record(self._stream)
        batch.device_x = x

    def _gpu_decode(self, encoded: list[tuple[int, Any]], device: Any) -> list[Any]:
        """One batched decode of the JPEG byte tensors on ``device`` (nvjpeg on CUDA)."""
        from torchvision.io import ImageReadMode, decode_jpeg

        tensors = [e for _, e in encoded]
        if device.type == "cuda":  # the op itself: no per-call checks and warnings in Python
            op = getattr(self.torch.ops.image, "decode_jpegs_cuda", None)
            if op is not None:
                return op(tensors, ImageReadMode.RGB.value, device)
        return decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)

    def _gpu_decode_into(self, x: Any, encoded: list[tuple[int, Any]]) -> None:
        """Decode JPEGs on ``x``'s device (nvjpeg on CUDA, one batched call), resize, fill ``x``."""
        self._place(x, encoded, self._gpu_decode(encoded, x.device))

    def _place(self, x: Any, encoded: list[tuple[int, Any]], images: list[Any]) -> None:
        """Decoded images resized into their positions of ``x`` (one resize per shape)."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(tuple(img.shape[-2:]), []).append(i)
        for members in groups.values():
            stack = self.torch.stack([images[i] for i in members])
            resized = resize_uint8(stack, self.backbone.input_size, self.backbone.interpolation)
            _put_rows(x, [encoded[i][0] for i in members], resized)

    def _gpu_decode_stack(self, encoded: list[tuple[int, Any]]) -> Any:
        """A batch of JPEGs only, at positions 0..n-1: decoded, resized, as one uint8 tensor."""
        torch = self.torch
        images = self._gpu_decode(encoded, torch.device(self.device))
        shape = images[0].shape
        if all(img.shape == shape for img in images):  # the usual case: no copy into place
            stack = torch.stack(images)
            return resize_uint8(stack, self.backbone.input_size, self.backbone.interpolation)
        size = self.backbone.input_size
        x = torch.empty((len(images), 3, size, size), dtype=torch.uint8, device=images[0].device)
        self._place(x, encoded, images)
        return x

    def run(self, work: _Work) -> int:
        """Compute every missing row; returns how many source images were decoded.

        On CUDA the loop is pipelined one batch deep: batch k+1 is launched
        before batch k's features are copied back, and cache entries are
        written by a background thread, so neither waits for the other.
        """
        if self.device == "cpu" and self.cpu_lanes:
            with tuned_malloc():  # activation buffers stay in the heap (bench/malloc_tuning.py)
                return self._run_lanes(work)
        if self._jpeg_direct(work.jobs):
            return self._run_jpeg_direct(work)
        torch = self.torch
        jobs, total = work.jobs, work.total
        q: queue.Queue = queue.Queue(maxsize=3)
        stop = threading.Event()
        producer = threading.Thread(target=self._batches, args=(jobs, q, stop), daemon=True)
        model = self._model()
        forward = self._forward_fn(model, total)
        autocast = self._autocast()
        collect = _Collector(work, self.backbone.name)
        wait = compute = 0.0
        t_start = time.perf_counter()
        bar = _progress(work.progress, total, work.label)
        producer.start()
        try:
            with bar as tracker, torch.inference_mode(), autocast:
                while True:
                    tw = time.perf_counter()
                    item = q.get()
                    wait += time.perf_counter() - tw
                    if item is _SENTINEL:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    tc = time.perf_counter()
                    out, event = self._to_host(forward(self._to_input(item)).float())
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
        self.stats = {
            "batch_size": self.batch_size,
            "workers": self.workers,
            "torch_threads": torch.get_num_threads(),
            "gpu_jpeg": self.gpu_jpeg,
            "compiled": self.compiled,
            "wait_seconds": round(wait, 4),
            "compute_seconds": round(elapsed, 4),
            "forward_seconds": round(compute, 4),
        }
        return self._n_decoded

    # -- CUDA: original JPEGs straight to nvjpeg (bench/gpu_pipeline.py) ---------
    def _jpeg_direct(self, jobs: list[_Job]) -> bool:
        mode = os.environ.get("LEUKOBENCH_GPU_PIPELINE", "auto").strip().lower()
        if mode not in ("auto", "classic"):
            raise UserError(f"LEUKOBENCH_GPU_PIPELINE={mode!r}: use 'auto' or 'classic'")
        return (
            mode == "auto"
            and self.device.split(":", 1)[0] in self.jpeg_direct_devices
            and self.mask_fn is None
            and _gpu_jpeg_available()
            and eligible(jobs)
        )

    def _to_host(self, out: Any) -> tuple[Any, Any]:
        """Start copying ``out`` to the host: ``(host tensor, CUDA event to wait on | None)``."""
        torch = self.torch
        if self.cuda:  # through pinned memory, without waiting for the network
            host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
            host.copy_(out, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            return host, event
        if self.device == "mps":
            return out.to("cpu"), None
        return out, None

    def _autocast(self) -> Any:
        torch = self.torch
        if not self.cuda:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=getattr(torch, cuda_autocast_dtype(self.backbone)))

    def _run_jpeg_direct(self, work: _Work) -> int:
        forward = self._forward_fn(self._model(), work.total)
        pipe = JpegPipeline(self, self.readers)
        pipe.run(work, forward, self._autocast())
        self.stats = {
            "batch_size": self.batch_size,
            "workers": self.readers,
            "torch_threads": self.torch.get_num_threads(),
            "gpu_jpeg": True,
            "compiled": self.compiled,
            **pipe.stats,
        }
        return self._n_decoded

    # -- CPU: lanes --------------------------------------------------------------
    def _split_jobs(self, jobs: list[_Job]) -> list[_Job]:
        """Jobs with at most ``batch_size`` rows each (a source's rows may then span batches)."""
        out: list[_Job] = []
        for job in jobs:
            for i in range(0, len(job.rows), self.batch_size):
                out.append(
                    _Job(job.source, job.path, job.digest, job.rows[i : i + self.batch_size])
                )
        return out

    def _fill(self, x: Any, jobs: list[_Job], normaliser: Normaliser, pool: Any) -> list[int]:
        """Decode ``jobs`` into the lane's NHWC float buffer ``x``; returns the rows, in order."""
        starts, rows, at = [], [], 0
        for job in jobs:
            starts.append(at)
            rows.extend(row for row, _ in job.rows)
            at += len(job.rows)

        def one(i: int) -> None:
            job = jobs[i]
            base = self._base_image(job)
            for k, (_, t) in enumerate(job.rows):
                normaliser.into(x[starts[i] + k], self.transform(base, t))

        if pool is None:
            for i in range(len(jobs)):
                one(i)
        else:
            list(pool.map(one, range(len(jobs))))
        return rows

    def _run_lanes(self, work: _Work) -> int:
        """CPU: every lane takes a batch, decodes it, runs the network, stores the rows.

        Lanes write their rows' cache entries themselves after each batch, so an
        interrupted run keeps every finished batch. On Ctrl-C the lanes finish the
        batch in hand and stop.
        """
        torch = self.torch
        jobs = self._split_jobs(work.jobs)
        total = work.total
        cache, filler = work.cache, _RowFiller(work.keys, work.todo, work.features)
        size = self.backbone.input_size
        normaliser = Normaliser(self.backbone.mean, self.backbone.std, size)
        model = self._model()
        stop = threading.Event()
        errors: list[BaseException] = []
        lock = threading.Lock()
        timing = {"decode": 0.0, "forward": 0.0, "store": 0.0}
        done = 0

        def lane() -> None:
            nonlocal done
            torch.set_num_threads(self.lane_threads)
            pool = None
            if self.lane_threads > 1:
                pool = ThreadPoolExecutor(
                    self.lane_threads,
                    thread_name_prefix="lb-decode",
                    initializer=torch.set_num_threads,
                    initargs=(1,),
                )
            x = torch.empty((self.batch_size, size, size, 3), dtype=torch.float32)
            try:
                with torch.inference_mode():
                    while not stop.is_set():
                        part = plan.take()
                        if not part:
                            return
                        t0 = time.perf_counter()
                        rows = self._fill(x, part, normaliser, pool)
                        t1 = time.perf_counter()
                        inp = x[: len(rows)].permute(0, 3, 1, 2)  # NCHW view of NHWC
                        vecs = forward(inp).float().numpy()
                        t2 = time.perf_counter()
                        filler.fill(rows, vecs)
                        if cache is not None:  # the batch in one pack
                            cache.put_many(filler.computed(rows), self.backbone.name)
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
        with torch_threads(self.lane_threads):
            forward = self._forward_fn(model, total)
            if self.compiled:  # compile once, here, for the lanes' thread count and shape
                with torch.inference_mode():
                    forward(
                        torch.zeros((self.batch_size, 3, size, size)).contiguous(
                            memory_format=torch.channels_last
                        )
                    )
            plan = BatchPlan(
                jobs,
                [len(j.rows) for j in jobs],
                self.batch_size,
                self.lanes,
                guided=not self.compiled,  # a compiled model pads every batch to full size
            )
            threads = [
                threading.Thread(target=lane, name=f"lb-lane-{i}", daemon=True)
                for i in range(self.lanes)
            ]
            bar = _progress(work.progress, total, work.label)
            try:
                with bar as tracker:
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
        elapsed = time.perf_counter() - t_start
        self.stats = {
            "batch_size": self.batch_size,
            "lanes": self.lanes,
            "lane_threads": self.lane_threads,
            "torch_threads": self.lanes * self.lane_threads,
            "gpu_jpeg": False,
            "compiled": self.compiled,
            "decode_seconds": round(timing["decode"], 4),
            "forward_seconds": round(timing["forward"], 4),
            "store_seconds": round(timing["store"], 4),
            "wait_seconds": round(timing["decode"] / self.lanes, 4),
            "compute_seconds": round(elapsed, 4),
        }
        return self._n_decoded


@dataclass
class _Work:
    """One call's missing samples, and where their features go."""

    jobs: list[_Job]
    keys: list[str]  # every sample's cache key
    todo: dict[str, list[int]]  # missing key -> the rows that want it (the first is computed)
    features: np.ndarray  # the result, filled in place
    cache: FeatureCache | None
    progress: bool
    label: str

    @property
    def total(self) -> int:
        return sum(len(job.rows) for job in self.jobs)


class _Collector:
    """Takes computed batches: fills their rows, hands one pack per batch to a writer thread.

    One writer: more were measured slower on an H200 (they fight the decode thread
    for the GIL).
    """

    def __init__(self, work: _Work, backbone: str) -> None:
        self.filler = _RowFiller(work.keys, work.todo, work.features)
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


class _RowFiller:
    """Writes computed vectors into the result, and into the rows that share their key."""

    def __init__(self, keys: list[str], todo: dict[str, list[int]], features: np.ndarray) -> None:
        self.keys = keys
        self.features = features
        self.dups = {rows[0]: rows[1:] for rows in todo.values() if len(rows) > 1}

    def fill(self, rows: list[int], vecs: np.ndarray) -> None:
        first, n = rows[0], len(rows)
        if rows == list(range(first, first + n)):
            self.features[first : first + n] = vecs
        else:
            self.features[rows] = vecs
        if self.dups:
            for row, vec in zip(rows, vecs):
                for dup in self.dups.get(row, ()):
                    self.features[dup] = vec

    def computed(self, rows: list[int]) -> dict[str, np.ndarray]:
        """key -> vector of ``rows`` (already filled), for the cache."""
        keys, features = self.keys, self.features
        return {keys[row]: features[row] for row in rows}


def resize_uint8(images: Any, size: int, interpolation: str) -> Any:
    """A uint8 ``(N, 3, H, W)`` tensor resized to ``size`` x ``size`` on its own device.

    Float interpolation (antialiased when shrinking), rounded back to uint8 as
    PIL does; pixels may differ from PIL's fixed-point resize by one level.
    """
    import torch
    import torch.nn.functional as F

    if tuple(images.shape[-2:]) == (size, size):
        return images
    mode = interpolation if interpolation in ("bilinear", "bicubic", "nearest") else "bilinear"
    kwargs: dict[str, Any] = {}
    if mode != "nearest":
        kwargs = {"antialias": True, "align_corners": False}
    out = F.interpolate(images.float(), size=(size, size), mode=mode, **kwargs)
    return out.round_().clamp_(0, 255).to(torch.uint8)


@dataclass
class _Batch:
    """One batch from the decode thread (see :meth:`_Runner._batches`)."""

    rows: list[int]
    host_pos: list[int]
    host: np.ndarray | None
    encoded: list[tuple[int, Any]]
    device_x: Any = None  # the input, ready: uint8 NCHW on the GPU, or normalised on the CPU
    ready: Any = None  # CUDA event: device_x is complete


def _put_rows(x: Any, positions: list[int], values: Any) -> None:
    """``x[positions] = values`` without a synchronising host-to-device index copy."""
    import torch

    if positions == list(range(positions[0], positions[0] + len(positions))):
        x[positions[0] : positions[0] + len(positions)] = values
        return
    idx = torch.tensor(positions, dtype=torch.long)
    if x.is_cuda:
        idx = idx.pin_memory().to(x.device, non_blocking=True)
    x.index_copy_(0, idx, values)


def _gpu_jpeg_available() -> bool:
    if os.environ.get("LEUKOBENCH_GPU_JPEG", "1") == "0":
        return False
    try:
        from torchvision.io import decode_jpeg  # noqa: F401
    except ImportError:
        return False
    return True


class _Tracker:
    def __init__(self, update: Callable[[int], None], ctx: Any) -> None:
        self._update = update
        self._ctx = ctx

    def __enter__(self) -> Callable[[int], None]:
        if self._ctx is not None:
            self._ctx.__enter__()
        return self._update

    def __exit__(self, *exc: object) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)


def _progress(enabled: bool, total: int, label: str) -> _Tracker:
    """A rich progress bar with images/s, or a no-op."""
    if not enabled:
        return _Tracker(lambda done: None, None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    prog = Progress(
        TextColumn("[bold]extract[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]} img/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )
    task = prog.add_task(label, total=total, rate="-")
    t0 = time.perf_counter()

    def update(done: int) -> None:
        dt = time.perf_counter() - t0
        prog.update(task, completed=done, rate=f"{done / dt:.1f}" if dt > 0 else "-")

    return _Tracker(update, prog)
