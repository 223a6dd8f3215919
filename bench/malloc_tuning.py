"""Keep large CPU tensor buffers in the heap while a network runs.

glibc's malloc serves every request above its mmap threshold with a fresh
``mmap`` and returns it with ``munmap`` on free, and trims the heap back after
frees. A CNN forward allocates several large activation buffers per batch, so
every batch page-faulted them in again and the kernel zeroed every page: on
the CI machine EfficientNet-Lite0 spent more time in the kernel than in its
own arithmetic (26.7 s system vs 24.0 s user for a few hundred batches).

Two parts:

* :func:`prepare_malloc` (the command line calls it before any thread exists):
  one malloc arena, so threads started later (the extraction lanes) share the
  main heap instead of small per-thread heaps that are grown and shrunk.
  :func:`bench.crossval.cross_validate` calls it too before starting its fit
  threads: with one heap per thread, each kept what its fits freed (at
  n = 10,000 x 4,096 the process held 0.4-0.6 GB above what the memory budget
  accounts for; with one arena it stays within ~50 MB of it), and
  :func:`trim_heap` when the run is over.
* :func:`tuned_malloc`, around CPU extraction and fine-tuning: no ``mmap`` for
  allocations and no trimming, so freed buffers are reused as they are. On
  leaving, glibc's limits are put back where its own dynamic rule ends up
  (mmap above 32 MB, trim above 64 MB) and free memory is returned to the
  system (``malloc_trim``), so later phases (Model 1's classifiers) do not
  keep the extraction's peak: a classifier sweep over Aria peaked at 2.27 GB
  (2.29 GB untuned, 3.70 GB with the settings left on for the whole run) and
  took 1:51 against 2:20 untuned.

Effect (docs/PERFORMANCE.md): EfficientNet-Lite0's bare forward 82-94 ->
167-224 img/s, AlexNet's ~290 -> ~300 img/s, the CPU fine-tuning step 1.2-1.6x.
``LEUKOBENCH_MALLOC=default`` leaves malloc alone. Linux with glibc only;
elsewhere both do nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys
import threading
from collections.abc import Iterator

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
_DEFAULT_MMAP_MAX = 65536
_SETTLED_MMAP_THRESHOLD = 32 << 20  # the most glibc's dynamic threshold grows to (64-bit)
_SETTLED_TRIM_THRESHOLD = 64 << 20  # and its trim threshold then (twice that)
_OFF = ("0", "off", "no", "false", "default", "system")

_lock = threading.Lock()
_state = {"depth": 0, "prepared": False}


def malloc_tuning_enabled() -> bool:
    """Whether ``LEUKOBENCH_MALLOC`` allows the tuning (it does unless set to ``default``)."""
    return os.environ.get("LEUKOBENCH_MALLOC", "tuned").strip().lower() not in _OFF


def _libc() -> ctypes.CDLL | None:
    if not malloc_tuning_enabled() or not sys.platform.startswith("linux"):
        return None
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def prepare_malloc() -> bool:
    """One malloc arena for the process; call before threads exist. True when set."""
    with _lock:
        libc = _libc()
        if libc is None:
            return False
        _state["prepared"] = libc.mallopt(M_ARENA_MAX, 1) == 1
        return bool(_state["prepared"])


def trim_heap() -> bool:
    """Return free heap memory to the system (``malloc_trim(0)``); True when it ran."""
    libc = _libc()
    if libc is None:
        return False
    with _lock:
        libc.malloc_trim(0)
    return True


@contextlib.contextmanager
def tuned_malloc() -> Iterator[bool]:
    """Heap-only, untrimmed allocation for the body (re-entrant); yields whether it applies."""
    libc = _libc()
    if libc is None:
        yield False
        return
    with _lock:
        if _state["depth"] == 0:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
        _state["depth"] += 1
    try:
        yield True
    finally:
        with _lock:
            _state["depth"] -= 1
            if _state["depth"] == 0:
                libc.mallopt(M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(M_MMAP_THRESHOLD, _SETTLED_MMAP_THRESHOLD)
                libc.mallopt(M_TRIM_THRESHOLD, _SETTLED_TRIM_THRESHOLD)
                libc.malloc_trim(0)
