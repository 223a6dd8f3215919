"""`leukobench audit` on the real study sets (skipped when ../shared/data is absent).

Acquisition properties only (``backbone=None``), so the tests take seconds; the
feature tests on real data are shown in docs/REPRODUCTION.md.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from bench.audit.pipeline import AuditInput, AuditOptions, run_audit
from bench.audit.shortcut import FAIL_AUC, WARN_AUC
from bench.data.loaders import load_imagefolder, load_manifest

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_study_manifests.py"


@pytest.fixture(scope="module")
def property_cache(tmp_path_factory) -> Path:
    """One property cache for the module, so Aria's properties are computed once."""
    return tmp_path_factory.mktemp("audit-cache")


@pytest.fixture
def study(dataset_dir, tmp_path) -> tuple[Path, Path]:
    """(the two-source manifest built as scripts/make_study_manifests.py does, Aria's folder)."""
    dataset_dir("bccd_wbc_type_smears")
    aria = dataset_dir("aria_all_pbs_binary")
    spec = importlib.util.spec_from_file_location("make_study_manifests", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.build_all(aria.parent, tmp_path / "manifests", seed=0)
    return written["two_source"], aria


def _finding(report: dict, prefix: str) -> dict:
    return next(f for f in report["findings"] if f["id"].startswith(prefix))


def test_two_source_design_is_flagged_by_acquisition_test_and_source_check(study, property_cache):
    two_source, aria = study
    report = run_audit(
        AuditInput(load_manifest(two_source), "manifest", str(two_source)),
        [AuditInput(load_imagefolder(aria), "imagefolder", str(aria))],
        AuditOptions(backbone=None, progress=False, cache_dir=property_cache),
    )
    acq = _finding(report, "acquisition")
    assert acq["level"] == "fail"
    families = {r["family"]: r for r in acq["result"]["per_family"]}
    assert families["resolution"]["auc"]["low"] >= FAIL_AUC  # resolution alone separates it
    assert "without looking at a cell" in acq["verdict"]
    check = _finding(report, "source:")
    assert check["level"] == "fail"
    healthy = next(c for c in check["result"]["comparisons"] if c["subject"] == "class 'healthy'")
    assert healthy["level"] == "fail"  # healthy BCCD vs healthy Aria: told apart by source
    assert report["level"] == "fail"


def test_aria_alone_is_reported_from_its_numbers(study, property_cache):
    _, aria = study
    report = run_audit(
        AuditInput(load_imagefolder(aria), "imagefolder", str(aria)),
        [],
        AuditOptions(backbone=None, progress=False, cache_dir=property_cache),
    )
    card = report["dataset"]
    assert card["n_images"] == 3216 and not card["patient_ids"]
    assert {c["name"]: c["n"] for c in card["classes"]} == {"healthy": 504, "leukemia": 2712}
    assert any("no patient ids" in n for n in report["notes"])
    acq = _finding(report, "acquisition")["result"]
    # the verdict follows the numbers, whatever they are
    file_low = (acq["file_properties"] or {}).get("auc", {}).get("low") or 0.0
    all_low = (acq["all_properties"] or {}).get("auc", {}).get("low") or 0.0
    expected = (
        "fail"
        if file_low >= FAIL_AUC
        else "warn"
        if all_low >= FAIL_AUC or max(file_low, all_low) > WARN_AUC
        else "ok"
    )
    assert acq["level"] == expected
    # every image is one size: resolution cannot be what separates the classes here
    assert "resolution" not in {r["family"] for r in acq["per_family"]}
