"""Ray executor vs local on one machine: `classifier-sweep` on Aria (warm features), extraction (cold).

Run: ``python -m pytest benchmarks/test_bench_executor.py -s``
(needs the ``ray`` extra and ``aria_all_pbs_binary`` under the shared data folder).

Measured in one process, one after the other, so the ratios share the machine's
load of the moment (absolute seconds on a loaded machine mean little):

* **warm**: the `classifier-sweep` suite (EfficientNet-Lite0, nine classifiers,
  grouped 10-fold) with every feature already cached and no cached predictions:
  one ``extract`` job (cache reads) and nine ``fit`` jobs.
* **cold**: extraction from an empty cache (one backbone, one cheap classifier).

Ray runs on a local cluster of the machine's cores started once in this process
(its start-up is reported on its own); the first Ray run pays the workers'
imports. Both executors' records must hold identical metrics. Figures go to
docs/PERFORMANCE.md ("Executors").
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

from bench.registry import get_registry  # noqa: E402
from bench.runner import run_suite  # noqa: E402
from bench.suite import load_suite  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _aria() -> Path:
    root = Path(os.environ.get("LEUKOBENCH_SHARED_DATA") or REPO.parent / "shared" / "data")
    path = root / "aria_all_pbs_binary"
    if not path.is_dir():
        pytest.skip(f"Aria not found at {path}")
    return path


def _run(suite_name: str, data: Path, cache: Path, out: Path, executor: str, overrides=()):
    registry = get_registry()
    suite = load_suite(
        suite_name, overrides=list(overrides), data_path=str(data), registry=registry
    )
    t0 = time.perf_counter()
    record, _ = run_suite(
        suite,
        registry=registry,
        results_dir=out,
        progress=False,
        cache_dir=cache,
        executor=executor,
    )
    return time.perf_counter() - t0, record


def _metrics(record) -> str:
    return json.dumps([(c["id"], c["metrics"], c["folds"][0]["y_pred"]) for c in record["cells"]])


def _fresh_with_features(warm: Path, dst: Path) -> Path:
    """A cache root holding ``warm``'s features only (predictions must be recomputed)."""
    shutil.copytree(warm / "features", dst / "features")
    return dst


def _report(label: str, local: tuple[float, dict], on_ray: tuple[float, dict]) -> None:
    (tl, rl), (tr, rr) = local, on_ray
    print(
        f"\n{label}: local {tl:.1f}s (extract {rl['timings']['extract_s']:.1f}s, "
        f"fit {rl['timings']['fit_s']:.1f}s) | ray {tr:.1f}s (extract "
        f"{rr['timings']['extract_s']:.1f}s, fit {rr['timings']['fit_s']:.1f}s in tasks) "
        f"| ray/local {tr / tl:.3f}"
    )


def test_ray_vs_local_on_aria(tmp_path):
    aria = _aria()
    t0 = time.perf_counter()
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", include_dashboard=False, logging_level="WARNING")
    print(f"\nray.init (local cluster, {ray.cluster_resources().get('CPU')} CPUs): "
          f"{time.perf_counter() - t0:.1f}s")  # fmt: skip
    try:
        # cold: extraction from an empty cache (one cheap classifier after it)
        cold = ['protocol.0.classifiers=["lda"]']
        cold_local = _run("classifier-sweep", aria, tmp_path / "c1", tmp_path / "r1", "local", cold)
        cold_ray = _run("classifier-sweep", aria, tmp_path / "c2", tmp_path / "r2", "ray", cold)
        assert _metrics(cold_local[1]) == _metrics(cold_ray[1])
        _report("cold extraction (efficientnet_lite0 + lda)", cold_local, cold_ray)

        # warm: the whole sweep, features cached, predictions not
        warm_local = _run(
            "classifier-sweep",
            aria,
            _fresh_with_features(tmp_path / "c1", tmp_path / "w1"),
            tmp_path / "r3",
            "local",
        )
        warm_ray = _run(
            "classifier-sweep",
            aria,
            _fresh_with_features(tmp_path / "c1", tmp_path / "w2"),
            tmp_path / "r4",
            "ray",
        )
        assert _metrics(warm_local[1]) == _metrics(warm_ray[1])
        _report("classifier-sweep, warm feature cache", warm_local, warm_ray)
    finally:
        ray.shutdown()
