"""scripts/make_study_manifests.py: seeded, balanced, path-only manifests the loader accepts."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_study_manifests.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_study_manifests", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def study_data(dataset_dir) -> Path:
    dataset_dir("bccd_wbc_type_smears")
    return dataset_dir("aria_all_pbs_binary").parent


def test_manifests_are_balanced_seeded_and_load(study_data: Path, tmp_path: Path) -> None:
    from bench.data.loaders import load_manifest

    mod = _script()
    written = mod.build_all(study_data, tmp_path / "a", seed=0)
    again = mod.build_all(study_data, tmp_path / "b", seed=0)
    other = mod.build_all(study_data, tmp_path / "c", seed=1)

    two = _rows(written["two_source"])
    counts = {lab: sum(r["label"] == lab for r in two) for lab in ("healthy", "leukemia")}
    assert counts == {"healthy": 348, "leukemia": 348}
    assert all(r["group"].startswith("bccd/") for r in two if r["label"] == "healthy")
    assert all(r["group"].startswith("aria/leukemia/") for r in two if r["label"] == "leukemia")
    assert len({r["group"] for r in two}) == len(two)

    check = _rows(written["source_check"])
    assert all(r["group"].startswith("aria/healthy/") for r in check if r["label"] == "aria")
    assert sum(r["label"] == "aria" for r in check) == 348

    assert _rows(again["two_source"]) == two  # same seed -> same sample
    assert _rows(other["two_source"]) != two  # another seed -> another sample
    assert not any(Path(r["path"]).is_absolute() for r in two)  # relative to the CSV

    imageset = load_manifest(written["two_source"], positive="leukemia")
    assert len(imageset) == 696 and imageset.positive == "leukemia"


def test_missing_data_is_a_clear_error(tmp_path: Path, capsys) -> None:
    mod = _script()
    assert mod.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert "folder not found" in capsys.readouterr().err
