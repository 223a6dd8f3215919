"""Keep large CPU tensor buffers in the heap instead of mapping them anew each time.

glibc's malloc serves every request above 32 MB (and, by its dynamic rule,
many smaller ones) with a fresh ``mmap`` and returns it with ``munmap`` on
free. A CNN forward allocates several such activation buffers per batch, so
every batch page-faults them in again and the kernel zeroes every page: on
the CI machine EfficientNet-Lite0 spent more time in the kernel than in its
own arithmetic (26.7 s system vs 24.0 s user for a few hundred batches).
:func:`tune_malloc` turns ``mmap`` for allocations off, stops the heap from
being trimmed back after each free, and keeps one malloc arena (so threads
started later share the warm heap): EfficientNet-Lite0's bare forward went
from 82-94 to 167-224 img/s and AlexNet's from ~290 to ~300 img/s
(docs/PERFORMANCE.md). The price is that memory freed after a big phase stays
with the process (resident size stays at its peak).

Process-wide and sticky, so it is applied by the command line (before any
thread exists, which the single-arena setting needs) and, best effort, by CPU
extraction and fine-tuning when called as a library. ``LEUKOBENCH_MALLOC=default``
leaves malloc alone. Only on Linux with glibc; elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
_OFF = ("0", "off", "no", "false", "default", "system")

_state: dict[str, bool] = {}
_lock = threading.Lock()


def malloc_tuning_enabled() -> bool:
    """Whether ``LEUKOBENCH_MALLOC`` allows the tuning (it does unless set to ``default``)."""
    return os.environ.get("LEUKOBENCH_MALLOC", "tuned").strip().lower() not in _OFF


def tune_malloc() -> bool:
    """Apply the settings once per process; True when they are in effect."""
    with _lock:
        if "applied" in _state:
            return _state["applied"]
        applied = False
        if malloc_tuning_enabled() and sys.platform.startswith("linux"):
            if platform.libc_ver()[0] == "glibc":
                try:
                    libc = ctypes.CDLL("libc.so.6")
                    ok = libc.mallopt(M_MMAP_MAX, 0) == 1
                    ok = libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok
                    libc.mallopt(M_ARENA_MAX, 1)  # effective only before other threads allocate
                    applied = ok
                except (OSError, AttributeError):
                    applied = False
        _state["applied"] = applied
        return applied
