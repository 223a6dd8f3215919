"""Peak memory of a whole ``leukobench run``: the Aria study from a cold cache (target <= 2 GB).

``suites/study/aria.toml`` (EfficientNet-Lite0 features of all 3,216 Aria images,
the paper's six classifiers x 10 grouped folds) runs in a child process with an
empty cache root; its own peak resident set (``VmHWM``) is the figure, in bytes
(2 GB = 2e9 bytes, stricter than 2 GiB)::

    python -m pytest benchmarks/test_bench_run_memory.py --benchmark-enable -s

``docs/PERFORMANCE.md`` ("Model 1 at scale") has the figures and what holds them.
"""

from __future__ import annotations

from pathlib import Path

from child_rss import peak_rss_bytes

REPO = Path(__file__).resolve().parents[1]
TARGET_BYTES = 2_000_000_000


def test_peak_rss_aria_study_cold(benchmark, aria_dir: Path, tmp_path: Path) -> None:
    args = [
        "run", str(REPO / "suites" / "study" / "aria.toml"), "--data", str(aria_dir),
        "--cache-dir", str(tmp_path / "cache"), "--results-dir", str(tmp_path / "results"),
        "--no-progress",
    ]  # fmt: skip

    def run() -> int:
        return peak_rss_bytes(args, cwd=REPO)

    peak = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(peak_rss_bytes=peak)
    print(f"\npeak RSS of `leukobench run suites/study/aria.toml`, cold: {peak / 1e9:.2f} GB")
    assert peak <= TARGET_BYTES
