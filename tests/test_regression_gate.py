"""The result regression gate CI runs: re-run a reference suite, compare with the committed record."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference" / "ci-reference.json"


@pytest.mark.slow
def test_reference_suite_has_not_regressed(tmp_path, capsys):
    if not REFERENCE.exists():
        pytest.fail(f"reference record missing: {REFERENCE} (see suites/ci-reference.toml)")
    assert main(["run", "ci-reference", "--results-dir", str(tmp_path), "--no-progress"]) == 0
    (candidate,) = tmp_path.glob("*.json")
    capsys.readouterr()
    code = main(
        ["compare", str(REFERENCE), str(candidate), "--metric", "accuracy", "--tolerance", "0.05"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
