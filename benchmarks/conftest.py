"""The speed gate around pytest-benchmark: enough rounds, and a one-screen verdict.

* When a run saves or compares (``--benchmark-autosave``, ``--benchmark-save``,
  ``--benchmark-compare``), every ``benchmark.pedantic`` call runs at least
  ``--benchmark-min-rounds`` rounds (pytest-benchmark's option, default 5) after
  one warm-up round, so the interquartile range -- the noise -- can be measured.
  Other runs keep each file's own rounds (quick measurements).
* With ``--benchmark-compare``, pytest-benchmark's wide table and its
  ``PerformanceRegression`` traceback are replaced by one row per benchmark
  (baseline, candidate, change, noise, verdict; ``speed_summary.py``) and exit 1
  when a benchmark is slower beyond both the ``--benchmark-compare-fail`` check
  and the noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.session import PerformanceRegression
from speed_summary import DEFAULT_CHECK, Check, compare, render

_session: dict[str, Any] = {}


def _gating(config: pytest.Config) -> bool:
    return bool(
        config.getoption("benchmark_autosave", False)
        or config.getoption("benchmark_save", None)
        or config.getoption("benchmark_compare", None)
    )


@pytest.fixture
def benchmark(benchmark: Any, request: pytest.FixtureRequest) -> Any:
    """pytest-benchmark's fixture; ``pedantic`` gets a rounds floor when the run gates."""
    config = request.config
    if not _gating(config):
        return benchmark
    floor = int(config.getoption("benchmark_min_rounds", 5) or 5)
    original = benchmark.pedantic

    def pedantic(
        target: Any,
        args: tuple = (),
        kwargs: dict | None = None,
        setup: Any = None,
        rounds: int = 1,
        warmup_rounds: int = 0,
        iterations: int = 1,
    ) -> Any:
        return original(
            target,
            args=args,
            kwargs=kwargs,
            setup=setup,
            rounds=max(rounds, floor),
            warmup_rounds=max(warmup_rounds, 1),
            iterations=iterations,
        )

    benchmark.pedantic = pedantic
    return benchmark


def pytest_sessionstart(session: pytest.Session) -> None:
    _session["session"] = session


def _checks(bs: Any) -> list[Check]:
    out = []
    for check in bs.compare_fail or []:
        relative = type(check).__name__.startswith("Percentage")
        out.append(Check(check.field, float(check.threshold), relative))
    return out or [Check.parse(DEFAULT_CHECK)]


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config):
    bs = getattr(config, "_benchmarksession", None)
    comparing = bool(bs is not None and not bs.disabled and getattr(bs, "compared_mapping", None))
    if comparing:
        bs.quiet = True  # our table replaces the 10-column one
    try:
        result = yield
    except PerformanceRegression:
        result = None
    if not comparing:
        return result
    current = [b.as_dict(include_data=False) for b in bs.benchmarks if b]
    baseline = [b for mapping in bs.compared_mapping.values() for b in mapping.values()]
    failed = False
    for check in _checks(bs):
        rows, only_base, only_cand = compare(baseline, current, check)
        terminalreporter.write_sep("=", f"speed gate ({check.text()})")
        for line in render(rows, check, only_base, only_cand).splitlines():
            terminalreporter.write_line(line)
        failed = failed or any(r.failed for r in rows)
    session = _session.get("session")
    if failed and session is not None and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return result


@pytest.fixture(scope="module")
def aria_dir() -> Path:
    """The real Aria ALL PBS folder (``../shared/data``); skips the benchmark when absent."""
    from tests.conftest import shared_data_dir

    path = shared_data_dir() / "aria_all_pbs_binary"
    if not path.is_dir():
        pytest.skip(f"dataset aria_all_pbs_binary not found at {path}")
    return path
