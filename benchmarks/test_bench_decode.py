"""Throughput of decode + check + resize on aria_all_pbs_binary (3,216 JPEGs, 224x224).

Run: ``python -m pytest benchmarks/test_bench_decode.py --benchmark-enable``.
Each round validates with a cold verdict cache (hash + full decode check) and
then decodes and resizes every image to 227x227.
"""

from __future__ import annotations

import shutil

import pytest

from bench.data.decode import decode_many
from bench.data.loaders import cache_root, load_imagefolder
from bench.data.validate import validate


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Never touch the user's cache: a fresh LEUKOBENCH_CACHE per benchmark."""
    monkeypatch.setenv("LEUKOBENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def aria(dataset_dir_module):
    return load_imagefolder(dataset_dir_module)


@pytest.fixture(scope="module")
def dataset_dir_module():
    from tests.conftest import shared_data_dir

    path = shared_data_dir() / "aria_all_pbs_binary"
    if not path.is_dir():
        pytest.skip(f"dataset aria_all_pbs_binary not found at {path}")
    return path


def _cold() -> None:
    shutil.rmtree(cache_root() / "validated", ignore_errors=True)


@pytest.mark.parametrize("workers", [1, 2])
def test_validate_and_decode_aria(benchmark, aria, workers):
    def run():
        out, _ = validate(aria, workers=workers)
        return decode_many(out.paths, 227, workers=workers)

    arr = benchmark.pedantic(run, setup=_cold, rounds=2, iterations=1)
    assert arr.shape == (3216, 227, 227, 3)
    benchmark.extra_info["images"] = len(aria)
    benchmark.extra_info["img_per_s"] = len(aria) / benchmark.stats.stats.mean


@pytest.mark.parametrize("workers", [1, 2])
def test_warm_validate_aria(benchmark, aria, workers):
    validate(aria, workers=workers)  # fill the verdict cache
    _, rep = benchmark.pedantic(lambda: validate(aria, workers=workers), rounds=3, iterations=1)
    assert rep.n_decoded == 0
    benchmark.extra_info["img_per_s"] = len(aria) / benchmark.stats.stats.mean
