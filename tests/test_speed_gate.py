"""The documented speed gate: enough rounds, one screen, exit 1 on a slowdown beyond the noise."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "speed_gate.py"

SLEEPS = """
import os, time

def test_steady(benchmark):
    benchmark.pedantic(time.sleep, args=(0.01,), rounds=1)

def test_slowed(benchmark):
    benchmark.pedantic(time.sleep, args=(0.01 * float(os.environ.get("SLOW", "1")),), rounds=2)
"""


def _pytest(project: Path, *args: str, slow: str = "1") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "benchmarks", "-q", "-p", "no:cacheprovider"]
    env = {"SLOW": slow, "PATH": "/usr/bin:/bin", "PYTHONPATH": ""}
    return subprocess.run(
        cmd + ["--benchmark-enable", *args], cwd=project, capture_output=True, text=True,
        env={**env, "HOME": str(project)}, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_compare_prints_one_screen_and_fails_without_traceback(tmp_path):
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    for name in ("conftest.py", "speed_summary.py"):
        shutil.copy(REPO / "benchmarks" / name, bench / name)
    (bench / "test_sleeps.py").write_text(SLEEPS, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    saved = _pytest(tmp_path, "--benchmark-autosave")
    assert saved.returncode == 0, saved.stdout + saved.stderr
    (baseline,) = (tmp_path / ".benchmarks").rglob("*.json")
    rounds = {
        b["name"]: b["stats"]["rounds"] for b in json.loads(baseline.read_text())["benchmarks"]
    }
    assert rounds == {"test_steady": 5, "test_slowed": 5}  # floor: --benchmark-min-rounds

    same = _pytest(tmp_path, "--benchmark-compare", "--benchmark-compare-fail=mean:15%")
    slow = _pytest(tmp_path, "--benchmark-compare", "--benchmark-compare-fail=mean:15%", slow="2.5")
    out = slow.stdout + slow.stderr
    assert slow.returncode == 1, out
    assert "Traceback" not in out and "INTERNALERROR" not in out
    assert len(out.splitlines()) < 30, out
    row = next(line for line in slow.stdout.splitlines() if line.startswith("test_slowed"))
    assert "SLOWER" in row and "5/5" in row and "%" in row
    assert "noise = larger IQR/median" in slow.stdout
    assert same.returncode in (0, 1)  # a busy machine may slow the steady one; never a crash
    assert "Traceback" not in same.stdout + same.stderr


def _saved(path: Path, stats: dict[str, dict]) -> Path:
    benchmarks = [{"fullname": f"b.py::{n}", "name": n, "stats": s} for n, s in stats.items()]
    path.write_text(json.dumps({"benchmarks": benchmarks}), encoding="utf-8")
    return path


def _stats(median: float, iqr: float, rounds: int = 9) -> dict:
    return {"mean": median, "median": median, "iqr": iqr, "rounds": rounds, "min": median}


def _gate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=60
    )


def test_saved_runs_verdicts(tmp_path):
    base = _saved(
        tmp_path / "base.json",
        {
            "steady": _stats(1.0, 0.02),
            "noisy": _stats(1.0, 0.5),
            "slower": _stats(1.0, 0.02),
            "faster": _stats(1.0, 0.02),
            "one_round": _stats(1.0, 0.0, rounds=1),
            "dropped": _stats(1.0, 0.02),
        },
    )
    cand = _saved(
        tmp_path / "cand.json",
        {
            "steady": _stats(1.05, 0.02),
            "noisy": _stats(1.3, 0.5),
            "slower": _stats(1.3, 0.02),
            "faster": _stats(0.7, 0.02),
            "one_round": _stats(1.3, 0.0, rounds=1),
            "new": _stats(1.0, 0.02),
        },
    )
    done = _gate(base, cand, "--fail", "mean:15%")
    assert done.returncode == 1, done.stdout
    verdict = {
        line.split()[0]: line.split("  ")[-1].strip() for line in done.stdout.splitlines()[2:7]
    }
    assert verdict == {
        "steady": "ok",
        "noisy": "noise?",
        "slower": "SLOWER",
        "faster": "faster",
        "one_round": "SLOWER (1 round)",
    }
    assert "not run in the candidate: dropped" in done.stdout
    assert "new (no baseline): new" in done.stdout
    assert "2 slower of 5 compared" in done.stdout
    assert _gate(base, base).returncode == 0
    bad = _gate(base, tmp_path / "missing.json")
    assert bad.returncode == 2 and "missing.json" in bad.stderr and "Traceback" not in bad.stderr
    assert _gate(base, cand, "--fail", "mean=15").returncode == 2
