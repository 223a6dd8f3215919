"""The malloc settings for CPU tensor work: applied once, in effect, and opt-out."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

_PROBE = """
import numpy as np
from bench.malloc_tuning import prepare_malloc, tuned_malloc

def big_maps():
    n = 0
    for line in open("/proc/self/maps"):
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        n += (hi - lo) >= 60 << 20 and line.split()[-1].startswith("0")  # anonymous, >= 60 MB
    return n

prepare_malloc()
with tuned_malloc() as applied:
    with tuned_malloc():  # re-entrant
        pass
    before = big_maps()
    a = np.ones(64 << 20, dtype=np.uint8)  # 64 MB: glibc would mmap it
    inside = big_maps() - before
    del a
before = big_maps()
b = np.ones(64 << 20, dtype=np.uint8)  # after the block: mmap again, as glibc does
print(applied, inside, big_maps() - before)
"""

glibc_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="malloc tuning applies to Linux with glibc only",
)


def _run_probe(code: str, env_value: str | None) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter with ``LEUKOBENCH_MALLOC`` unset or set to ``env_value``."""
    import os

    env = dict(os.environ)
    env.pop("LEUKOBENCH_MALLOC", None)
    if env_value is not None:
        env["LEUKOBENCH_MALLOC"] = env_value
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )


def _probe(env_value: str | None) -> tuple[bool, int, int]:
    out = _run_probe(_PROBE, env_value).stdout.split()
    return out[0] == "True", int(out[1]), int(out[2])


@glibc_linux
def test_big_buffers_come_from_the_heap_inside_the_block_only() -> None:
    applied, inside, after = _probe(None)
    assert applied and inside == 0 and after == 1


@glibc_linux
def test_default_leaves_malloc_alone() -> None:
    applied, inside, after = _probe("default")
    assert not applied and inside == 1 and after == 1  # each 64 MB array got its own mapping


_CV_PROBE = """
import ctypes, os, sys
import numpy as np
from bench.crossval import cross_validate

rng = np.random.default_rng(0)
X = rng.normal(size=(400, 64)).astype(np.float32)
y = (X[:, 0] > 0).astype(int)
folds = [(np.arange(200, 400), np.arange(200)), (np.arange(200), np.arange(200, 400))]
cross_validate(X, y, folds, {"dt": {}, "logreg": {}, "rf": {}}, positive_index=1, n_jobs=2)
sys.stderr.flush()
ctypes.CDLL("libc.so.6").malloc_stats()  # one "Arena N:" block per heap, on stderr
"""


def _arenas(env_value: str | None) -> int:
    err = _run_probe(_CV_PROBE, env_value).stderr
    return sum(line.startswith("Arena ") for line in err.splitlines())


@glibc_linux
def test_cross_validation_fit_threads_share_one_heap() -> None:
    # Per-thread heaps each kept what their fits freed (0.4-0.6 GB at n = 10,000).
    # Threads started before the call (an import's) may own a heap already; the
    # fit threads add none.
    default = _arenas("default")
    assert default >= 3  # main + one per fit thread: the probe can tell
    assert _arenas(None) <= default - 2
