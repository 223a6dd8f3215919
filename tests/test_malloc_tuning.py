"""The malloc settings for CPU tensor work: applied once, in effect, and opt-out."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

_PROBE = """
import sys
import numpy as np
from bench.malloc_tuning import tune_malloc

def big_maps():
    n = 0
    for line in open("/proc/self/maps"):
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        n += (hi - lo) >= 60 << 20 and line.split()[-1].startswith("0")  # anonymous, >= 60 MB
    return n

applied = tune_malloc()
assert tune_malloc() is applied  # once per process
before = big_maps()
a = np.ones(64 << 20, dtype=np.uint8)  # 64 MB: glibc would mmap it
print(applied, big_maps() - before)
"""

glibc_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="malloc tuning applies to Linux with glibc only",
)


def _probe(env_value: str | None) -> tuple[bool, int]:
    import os

    env = dict(os.environ)
    env.pop("LEUKOBENCH_MALLOC", None)
    if env_value is not None:
        env["LEUKOBENCH_MALLOC"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


@glibc_linux
def test_big_buffers_come_from_the_heap() -> None:
    applied, new_maps = _probe(None)
    assert applied and new_maps == 0


@glibc_linux
def test_default_leaves_malloc_alone() -> None:
    applied, new_maps = _probe("default")
    assert not applied and new_maps == 1  # the 64 MB array got its own mapping
