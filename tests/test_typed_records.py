"""Typed records: every committed record round-trips; malformed records are named, not crashes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.records import RecordError, read_run_record
from bench.report import methods, table1

RESULTS = Path(__file__).resolve().parents[1] / "results"
REFERENCE = RESULTS / "reference" / "ci-reference.json"


def test_every_committed_record_round_trips_exactly():
    paths = sorted(RESULTS.rglob("*.json"))
    assert paths
    for path in paths:
        raw = json.loads(path.read_text())
        if raw.get("schema") != "leukobench.result/1":
            continue
        assert read_run_record(path).to_json() == raw, path


def test_reports_read_typed_records_with_protocol_labels():
    record = read_run_record(REFERENCE)
    ms = methods(record)
    assert ms and all(m.model == c.model for m in ms for c in m.cells)
    rows = table1(record)[0].rows
    assert all(" + " in r[0] for r in rows if "fine-tuned" not in r[0])


def _malformed(tmp_path: Path) -> Path:
    raw = json.loads(REFERENCE.read_text())
    raw["cells"][0]["metrics"] = "not a table"
    bad = tmp_path / "runs" / "bad.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps(raw))
    return bad


def test_malformed_cell_is_a_record_error_naming_file_and_field(tmp_path):
    bad = _malformed(tmp_path)
    with pytest.raises(RecordError, match=r"bad\.json: cells\[0\]\.metrics: expected dict"):
        read_run_record(bad)


def test_report_and_compare_exit_2_naming_the_field(tmp_path, capsys):
    bad = _malformed(tmp_path)
    assert main(["report", str(bad)]) == 2
    assert "bad.json: cells[0].metrics" in capsys.readouterr().err
    assert main(["compare", str(REFERENCE), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.json: cells[0].metrics" in err and "internal error" not in err


def test_leaderboard_warns_and_skips_a_malformed_record(tmp_path, capsys):
    bad = _malformed(tmp_path)
    shutil.copy(REFERENCE, bad.parent / "good.json")
    assert main(["leaderboard", str(bad.parent), "--include-synthetic"]) == 0
    captured = capsys.readouterr()
    assert "bad.json: cells[0].metrics" in captured.err
    assert "efficientnet_lite0" in captured.out
