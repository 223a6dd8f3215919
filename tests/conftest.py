"""Shared fixtures: where the real datasets live, and a clean registry per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$LEUKOBENCH_SHARED_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("LEUKOBENCH_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets folder; skips the test with a clear reason when absent."""
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"real datasets not found at {root} (set LEUKOBENCH_SHARED_DATA)")
    return root


@pytest.fixture
def dataset_dir(shared_data: Path):
    """``dataset_dir("cnmc2019_mini")`` -> the folder, or skip when missing."""

    def get(name: str) -> Path:
        path = shared_data / name
        if not path.is_dir():
            pytest.skip(f"dataset {name} not found at {path}")
        return path

    return get


@pytest.fixture(autouse=True)
def _fresh_registry(tmp_path_factory, monkeypatch):
    """Every test gets a fresh plugin registry and its own feature cache."""
    from bench.registry import reset_registry

    reset_registry()
    monkeypatch.setenv("LEUKOBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("COLUMNS", "200")  # wide rich tables, so assertions see whole cells
    yield
    reset_registry()
    from bench.cache_paths import set_cache_root

    set_cache_root(None)  # a ContextSpec.open() in a test set this process's cache root
