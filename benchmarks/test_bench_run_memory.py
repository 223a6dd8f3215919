"""Peak memory of a whole ``leukobench run``: the Aria study from a cold cache (target <= 2 GB).

``suites/study/aria.toml`` (EfficientNet-Lite0 features of all 3,216 Aria images,
the paper's six classifiers x 10 grouped folds) runs in a child process with an
empty cache root; its own peak resident set (``VmHWM``) is the figure, in bytes
(2 GB = 2e9 bytes, stricter than 2 GiB)::

    python -m pytest benchmarks/test_bench_run_memory.py --benchmark-enable -s

``docs/PERFORMANCE.md`` ("Model 1 at scale") has the figures and what holds them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TARGET_BYTES = 2_000_000_000

# VmHWM is this process's own peak (ru_maxrss would carry the parent's across exec).
_CHILD = """
import re, sys
from pathlib import Path
from bench.cli import main
rc = main(sys.argv[1:])
print("PEAK_RSS_KIB", re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text())[1])
sys.exit(rc)
"""


@pytest.fixture(scope="module")
def aria_dir() -> Path:
    from tests.conftest import shared_data_dir

    path = shared_data_dir() / "aria_all_pbs_binary"
    if not path.is_dir():
        pytest.skip(f"dataset aria_all_pbs_binary not found at {path}")
    return path


def test_peak_rss_aria_study_cold(benchmark, aria_dir: Path, tmp_path: Path) -> None:
    args = [
        "run", str(REPO / "suites" / "study" / "aria.toml"), "--data", str(aria_dir),
        "--cache-dir", str(tmp_path / "cache"), "--results-dir", str(tmp_path / "results"),
        "--no-progress",
    ]  # fmt: skip

    def run() -> int:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, *args],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
        ).stdout
        return int(out.rsplit("PEAK_RSS_KIB", 1)[1].split()[0]) * 1024

    peak = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(peak_rss_bytes=peak)
    print(f"\npeak RSS of `leukobench run suites/study/aria.toml`, cold: {peak / 1e9:.2f} GB")
    assert peak <= TARGET_BYTES
