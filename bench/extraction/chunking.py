"""A CPU lane's batch through the network in chunks, where that is bit-identical.

A CPU lane's memory is its activations: EfficientNet-Lite0 at batch 32 holds
~0.43 GB at its peak, and two lanes ~1.1 GB once the heap has settled. Running
the batch as two chunks of 16 halves that at the same speed (measured in
``docs/PERFORMANCE.md``). The batch size itself stays what it was, because the
features' last bits depend on it: oneDNN blocks a batch by 16 rows, so on the
CPUs measured a batch of 32 gives the same bits whole or as 16 + 16, while a
batch of 24 does not equal 16 + 8. A backbone asks for chunks with
``RuntimeHints.cpu_forward_chunk`` (EfficientNet-Lite does; AlexNet does not:
its fully connected weights are read once per chunk, ~7% slower).

Whether chunks are bit-identical depends on the CPU, the library and the thread
count, so it is never assumed: :func:`chunk_rows` runs the model once on a
seeded synthetic batch, whole and in chunks, and chunks only if every bit
agrees. The verdict is kept per (backbone, input, batch, chunk, threads, CPU,
torch) in ``<cache root>/forward-chunks.json``; a missing or unreadable file only
means probing again. ``LEUKOBENCH_FORWARD_CHUNK=0`` turns chunking off.

Batches whose size is not a multiple of the chunk run whole (their bits would
change otherwise). Those the plan shrinks at the end of a run (the guided tail)
run one at a time across lanes (:class:`ChunkedForward`), so two of them never
hold whole-batch activations together.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write_text
from bench.errors import UserError

FILE_NAME = "forward-chunks.json"
# Without a stored verdict, probe only when the call computes at least this many
# images: the probe costs about two batches on one lane.
PROBE_MIN_IMAGES = 1024
_SCHEMA = 1
_memo: dict[str, bool] = {}
_memo_lock = threading.Lock()


def forget_verdicts() -> None:
    """Forget the verdicts this process has seen (the file stays): the next call reads it."""
    with _memo_lock:
        _memo.clear()


def chunking_enabled() -> bool:
    """``LEUKOBENCH_FORWARD_CHUNK``: ``auto`` (the default: probe) or ``0``/``off``."""
    mode = os.environ.get("LEUKOBENCH_FORWARD_CHUNK", "auto").strip().lower()
    if mode in ("0", "off", "false", "no"):
        return False
    if mode in ("auto", "", "1", "on", "true", "yes"):
        return True
    raise UserError(f"LEUKOBENCH_FORWARD_CHUNK={mode!r}: use 'auto' or '0'")


def cpu_identity() -> str:
    """The CPU as kernels see it: torch's vector capability and the model name."""
    import torch

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{torch.backends.cpu.get_cpu_capability()}:{model}"


def verdict_key(backbone: Any, batch_size: int, chunk: int, threads: int) -> str:
    """What a verdict holds for: the network, its input, batch, chunk, threads, CPU and torch."""
    import torch

    layer = getattr(backbone, "layer", "") or "-"
    return (
        f"{backbone.name}|layer={layer}|input={backbone.input_size}|batch={batch_size}"
        f"|chunk={chunk}|threads={threads}|torch={torch.__version__}|cpu={cpu_identity()}"
    )


class VerdictStore:
    """``forward-chunks.json`` in a cache root: key -> whether chunks are bit-identical."""

    def __init__(self, root: Path | None) -> None:
        self.path = None if root is None else Path(root) / FILE_NAME

    def get(self, key: str) -> bool | None:
        with _memo_lock:
            if key in _memo:
                return _memo[key]
        return self._load().get(key)  # booleans only (_load drops the rest)

    def put(self, key: str, same: bool) -> None:
        with _memo_lock:
            _memo[key] = same
        if self.path is None:
            return
        verdicts = self._load()
        verdicts[key] = same
        payload = {"schema": _SCHEMA, "verdicts": dict(sorted(verdicts.items()))}
        with contextlib.suppress(OSError):  # a read-only cache only probes again next time
            atomic_write_text(self.path, json.dumps(payload, indent=1))

    def _load(self) -> dict[str, bool]:
        if self.path is None:
            return {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict) or raw.get("schema") != _SCHEMA:
            return {}
        verdicts = raw.get("verdicts")
        if not isinstance(verdicts, dict):
            return {}
        return {k: v for k, v in verdicts.items() if isinstance(v, bool)}


def chunks_identical(
    forward: Callable[[Any], Any], batch_size: int, chunk: int, input_size: int
) -> bool:
    """Whether ``forward`` gives the same bits on a seeded batch whole and in chunks."""
    import torch

    gen = torch.Generator().manual_seed(20260101)
    x = torch.randn((batch_size, 3, input_size, input_size), generator=gen)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        whole = forward(x)
        parts = torch.cat([forward(x[i : i + chunk]) for i in range(0, batch_size, chunk)])
    return whole.shape == parts.shape and bool(torch.equal(whole, parts))


def chunk_rows(
    forward: Callable[[Any], Any],
    backbone: Any,
    *,
    batch_size: int,
    threads: int,
    n_images: int,
    root: Path | None,
) -> int | None:
    """The chunk to run full batches in (the backbone's ``cpu_forward_chunk``), or None: whole.

    Call it with ``threads`` torch threads set in the calling thread (the lanes'
    count). Probes (and stores the verdict) when none is stored and the call is
    big enough to pay for it.
    """
    chunk = backbone.hints.cpu_forward_chunk
    if not chunking_enabled() or not chunk or batch_size <= chunk or batch_size % chunk:
        return None
    store = VerdictStore(root)
    key = verdict_key(backbone, batch_size, chunk, threads)
    same = store.get(key)
    if same is None:
        if n_images < PROBE_MIN_IMAGES:
            return None
        same = chunks_identical(forward, batch_size, chunk, backbone.input_size)
        store.put(key, same)
    return chunk if same else None


class ChunkedForward:
    """``forward`` over a lane's batch: in chunks when a multiple of ``chunk`` rows, else whole.

    With a chunk, whole batches of the plan's shrinking tail take a lock, so at
    most one lane holds a whole batch's activations at a time.
    """

    def __init__(self, forward: Callable[[Any], Any], chunk: int | None) -> None:
        self.forward = forward
        self.chunk = chunk
        self._whole = threading.Lock()

    def __call__(self, x: Any, *, tail: bool = False) -> Any:
        n, chunk = x.shape[0], self.chunk
        if chunk is None or n <= chunk:
            return self.forward(x)
        if n % chunk == 0:
            import torch

            return torch.cat([self.forward(x[i : i + chunk]) for i in range(0, n, chunk)])
        if not tail:
            return self.forward(x)
        with self._whole:
            return self.forward(x)
