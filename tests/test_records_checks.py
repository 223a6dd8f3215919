"""Records are checked when read: malformed or edited fields are one line (exit 2) naming the
file and the JSON path; stored metrics must agree with the stored predictions; the
leaderboard warns about and skips such a file."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures.records import binary_record, multiclass_record, write

from bench.cli import main
from bench.records import RecordError, read_run_record

RESULTS = Path(__file__).resolve().parents[1] / "results"
REFERENCE = RESULTS / "reference" / "ci-reference.json"  # written by `leukobench run`
MULTICLASS = RESULTS / "20261126T073259Z-study-pbc-wbc-types-ad10ed.json"  # 8 classes
EXTERNAL = RESULTS / "20261201T120616Z-study-external-cnmc-aria-452928.json"  # 60 -> 3216


def _cell(r: dict[str, Any]) -> dict[str, Any]:
    return r["cells"][0]


def _fold(r: dict[str, Any], i: int = 0) -> dict[str, Any]:
    return r["cells"][0]["folds"][i]


def _set(d: dict[str, Any], key: str, value: Any) -> None:
    d[key] = value


def _flip_predictions(r: dict[str, Any]) -> None:
    for fold in _cell(r)["folds"]:
        fold["y_pred"] = [1 - y for y in fold["y_pred"]]


# (name, edit of the reference record, what the one error line names)
MALFORMED: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("accuracy-string", lambda r: _set(_cell(r)["metrics"]["pooled"], "accuracy", "high"),
     "cells[0].metrics.pooled.accuracy: expected a number"),
    ("y_pred-string", lambda r: _fold(r)["y_pred"].__setitem__(7, "x"),
     "cells[0].folds[0].y_pred[7]: expected a class index (0..1), got str 'x'"),
    ("y_pred-null", lambda r: _fold(r)["y_pred"].__setitem__(2, None),
     "cells[0].folds[0].y_pred[2]: expected a class index (0..1), got null"),
    ("y_pred-bool", lambda r: _fold(r)["y_pred"].__setitem__(2, True),
     "cells[0].folds[0].y_pred[2]: expected a class index"),
    ("n_units-string", lambda r: _set(_cell(r)["metrics"], "n_units", "many"),
     "cells[0].metrics.n_units: expected an integer"),
    ("score-strings", lambda r: _set(_fold(r), "score", ["a"] * len(_fold(r)["y_true"])),
     "cells[0].folds[0].score[0]: expected a number"),
    ("score-short", lambda r: _set(_fold(r), "score", [0.5]),
     "cells[0].folds[0].score: expected 8 scores (one per prediction), got 1"),
    ("confusion-string", lambda r: _set(_cell(r)["metrics"], "confusion", "x"),
     "cells[0].metrics.confusion: expected a 2x2 matrix"),
    ("suite-config-string", lambda r: _set(r["suite"], "config", "x"),
     "suite.config: expected an object"),
    ("y_true-7", lambda r: _fold(r)["y_true"].__setitem__(0, 7),
     "cells[0].folds[0].y_true[0]: expected a class index (0..1), got int 7"),
    ("y_true-half", lambda r: _fold(r)["y_true"].__setitem__(0, 0.5),
     "cells[0].folds[0].y_true[0]: expected a class index"),
    ("y_true-true", lambda r: _fold(r)["y_true"].__setitem__(0, True),
     "cells[0].folds[0].y_true[0]: expected a class index"),
    ("test_index-99999", lambda r: _fold(r)["test_index"].__setitem__(0, 99999),
     "cells[0].folds[0].test_index[0]: expected a sample index (0..31), got int 99999"),
    ("test_index-negative", lambda r: _fold(r)["test_index"].__setitem__(0, -1),
     "cells[0].folds[0].test_index[0]: expected a sample index"),
    ("source-1e6", lambda r: _cell(r)["samples"]["source"].__setitem__(0, 10**6),
     "cells[0].samples.source[0]: expected an image index (0..31)"),
    ("classes-empty", lambda r: _set(_cell(r), "classes", []),
     "cells[0].classes: a complete cell needs 2 or more classes"),
    ("classes-3", lambda r: _set(_cell(r), "classes", ["a", "b", "c"]),
     "cells[0].classes: ['a', 'b', 'c'] differ from the dataset's classes"),
    ("dataset-empty", lambda r: _set(r, "dataset", {}), "dataset.name: expected"),
    ("fingerprint-int", lambda r: _set(r["dataset"], "fingerprint", 5),
     "dataset.fingerprint: expected a non-empty string, got int 5"),
    ("n_images-string", lambda r: _set(r["dataset"], "n_images", "eighty"),
     "dataset.n_images: expected an integer"),
    ("rate-infinite", lambda r: _set(_fold(r)["metrics"], "recall", float("inf")),
     "cells[0].folds[0].metrics.recall: expected a finite number"),
    ("ci-short", lambda r: _set(_cell(r)["metrics"]["ci"], "accuracy", [0.1]),
     "cells[0].metrics.ci.accuracy: expected a [low, high] pair"),
    ("status-unknown", lambda r: _set(_cell(r), "status", "done"),
     "cells[0].status: expected one of complete, failed, running"),
    ("pretrained-string", lambda r: _set(_cell(r)["backbone_info"], "pretrained", "no"),
     "cells[0].backbone_info.pretrained: expected true or false"),
    ("groups-short", lambda r: _set(r["dataset"], "groups", ["g1"]),
     "dataset.groups: 1 group ids for 32 paths"),
    ("transforms-missing", lambda r: _set(_cell(r)["samples"], "transforms", "nope"),
     "cells[0].samples.transforms: 'nope' is not in the record's transforms table"),
    # stored metrics that the stored predictions do not give (edited records)
    ("accuracy-edited", lambda r: _set(_cell(r)["metrics"]["pooled"], "accuracy", 0.5),
     "cells[0].metrics.pooled.accuracy: stored 0.5, but the cell's stored predictions give 0.90625"),
    ("accuracy-2", lambda r: _set(_cell(r)["metrics"]["pooled"], "accuracy", 2.0),
     "cells[0].metrics.pooled.accuracy: 2.0 is out of range (expected 0.0 to 1.0)"),
    ("predictions-inverted", _flip_predictions,
     "cells[0].metrics.pooled.accuracy: stored 0.90625, but the cell's stored predictions give 0.09375"),
    ("fold-recall-edited", lambda r: _set(_fold(r, 1)["metrics"], "recall", 0.1),
     "cells[0].folds[1].metrics.recall: stored 0.1, but"),
    ("confusion-edited", lambda r: _set(_cell(r)["metrics"], "confusion", [[16, 0], [0, 16]]),
     "cells[0].metrics.confusion: stored [[16, 0], [0, 16]], but the cell's stored predictions"),
    ("n_predictions-edited", lambda r: _set(_cell(r)["metrics"], "n_predictions", 99),
     "cells[0].metrics.n_predictions: stored 99"),
]  # fmt: skip


def _write(tmp_path: Path, raw: dict[str, Any], name: str = "bad.json") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


def _mutant(tmp_path: Path, edit: Callable[[dict[str, Any]], None], source: Path = REFERENCE):
    raw = json.loads(source.read_text(encoding="utf-8"))
    edit(raw)
    return _write(tmp_path, raw)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "internal error" not in err and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("name, edit, named", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_or_edited_record_is_one_line_naming_file_and_field(
    tmp_path, capsys, name, edit, named
):
    bad = _mutant(tmp_path, edit)
    with pytest.raises(RecordError, match=r"bad\.json: ") as info:
        read_run_record(bad)
    assert named in str(info.value) and "\n" not in str(info.value)
    figures = tmp_path / "figures"
    argv = ["report", str(bad), "--format", "md", "--extra-metrics", "--compare-methods"]
    assert main([*argv, "--figures", str(figures), "--figure-format", "svg"]) == 2
    assert named in _one_error_line(capsys)
    assert main(["compare", str(REFERENCE), str(bad)]) == 2
    assert named in _one_error_line(capsys)
    assert main(["compare", str(bad), str(REFERENCE)]) == 2
    assert named in _one_error_line(capsys)


def test_deeply_nested_json_is_one_line_not_a_recursion_error(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    depth = 100_000
    deep.write_text(
        '{"schema": "leukobench.result/1", "run_id": "x", "dataset": {}, "cells": '
        + "[" * depth
        + "]" * depth
        + "}"
    )
    for argv in (["report", str(deep)], ["compare", str(REFERENCE), str(deep)]):
        assert main(argv) == 2
        assert "deep.json: not a readable JSON result record (nested too deeply)" in (
            _one_error_line(capsys)
        )
    from bench.results import load_record

    with pytest.raises(RecordError):
        read_run_record(deep)
    with pytest.raises(Exception, match="nested too deeply"):
        load_record(deep)


def test_leaderboard_skips_each_bad_file_with_one_warning(tmp_path, capsys):
    board = tmp_path / "board"
    board.mkdir()
    shutil.copy(REFERENCE, board / "good.json")
    bad = {
        "config.json": lambda r: _set(r["suite"], "config", "x"),
        "string.json": lambda r: _set(_cell(r)["metrics"]["pooled"], "accuracy", "high"),
        "units.json": lambda r: _set(_cell(r)["metrics"], "n_units", "many"),
        "edited.json": lambda r: _set(_cell(r)["metrics"]["pooled"], "accuracy", 0.5),
        "big.json": lambda r: _set(_cell(r)["metrics"]["pooled"], "accuracy", 2.0),
        "nodata.json": lambda r: _set(r, "dataset", {}),
    }
    for name, edit in bad.items():
        raw = json.loads(REFERENCE.read_text())
        edit(raw)
        raw["run_id"] = name.removesuffix(".json")
        _write(board, raw, name)
    (board / "deep.json").write_text('{"schema": "leukobench.result/1", "cells": ' + "[" * 50_000)
    assert main(["leaderboard", str(board), "--include-synthetic", "--format", "md"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == len(bad) + 1, captured.err
    for name in [*bad, "deep.json"]:
        assert sum(name in line for line in warnings) == 1, (name, captured.err)
    assert all("skipped" in line for line in warnings)
    assert "internal error" not in captured.err
    assert "efficientnet_lite0" in captured.out and "? (fp ?)" not in captured.out
    assert "200.0" not in captured.out and "50.0 [" not in captured.out
    rows = [line for line in captured.out.splitlines() if "efficientnet_lite0" in line]
    assert all("ci-reference" in row for row in rows), rows


def test_api_load_result_refuses_an_edited_record(tmp_path):
    import bench

    bad = _mutant(tmp_path, lambda r: _set(_cell(r)["metrics"]["pooled"], "recall", 0.99))
    with pytest.raises(RecordError, match=r"cells\[0\]\.metrics\.pooled\.recall: stored 0\.99"):
        bench.load_result(bad)


def test_undefined_metrics_stored_as_null_pass_and_a_zero_in_their_place_fails(tmp_path, capsys):
    """A fold without positive predictions: its precision is 0/0, written as null."""
    from bench.metrics import compute_metrics, summarize
    from bench.results import dumps

    raw = json.loads(REFERENCE.read_text())
    cell = _cell(raw)
    cell["folds"][0]["y_pred"] = [0] * len(cell["folds"][0]["y_pred"])
    for fold in cell["folds"]:
        fold["metrics"] = compute_metrics(
            fold["y_true"], fold["y_pred"], fold["score"], n_classes=2, positive_index=1
        )
    cell["metrics"] = summarize(cell["folds"], n_classes=2, positive_index=1)
    good = tmp_path / "nan.json"
    good.write_text(dumps(raw))
    assert json.loads(good.read_text())["cells"][0]["folds"][0]["metrics"]["precision"] is None
    read_run_record(good)
    assert main(["report", str(good), "--format", "md"]) == 0
    capsys.readouterr()
    raw = json.loads(good.read_text())
    _fold(raw)["metrics"]["precision"] = 0.0
    bad = _write(tmp_path, raw)
    with pytest.raises(RecordError, match="precision: stored 0.0, but .* give null"):
        read_run_record(bad)


def test_multiclass_record_labels_and_macro_metrics_are_checked(tmp_path):
    read_run_record(MULTICLASS)
    bad = _mutant(tmp_path, lambda r: _fold(r)["y_pred"].__setitem__(0, 8), MULTICLASS)
    with pytest.raises(RecordError, match=r"y_pred\[0\]: expected a class index \(0\.\.7\)"):
        read_run_record(bad)
    edited = _mutant(
        tmp_path, lambda r: _set(_cell(r)["metrics"]["pooled"], "f1_macro", 0.123), MULTICLASS
    )
    with pytest.raises(RecordError, match=r"metrics\.pooled\.f1_macro: stored 0\.123"):
        read_run_record(edited)


def test_external_cells_index_their_test_set(tmp_path):
    """An external cell's samples index the test set (3216 images), not the training set (60)."""
    record = read_run_record(EXTERNAL)
    assert record.dataset["n_images"] == 60 and len(record.cells[0].samples.source) == 3216
    bad = _mutant(tmp_path, lambda r: _cell(r)["samples"]["source"].__setitem__(0, 3216), EXTERNAL)
    with pytest.raises(
        RecordError, match=r"samples\.source\[0\]: expected an image index \(0\.\.3215\)"
    ):
        read_run_record(bad)


def test_fabricated_records_pass_binary_multiclass_failed_and_finetune_cells(tmp_path):
    for record in (binary_record(seeds=(0, 1)), multiclass_record()):
        record["cells"].append({**record["cells"][0], "id": "x|failed", "status": "failed",
                                "error": "boom", "folds": [], "metrics": {}})  # fmt: skip
        read_run_record(write(record, tmp_path))


def test_every_committed_record_passes_the_checks():
    paths = sorted(RESULTS.rglob("*.json"))
    assert len(paths) > 10
    for path in paths:
        read_run_record(path)


TINY_SUITE = """
[suite]
name = "checks-tiny"
[data]
dataset = "synthetic"
options = { n_per_class = 8, size = 64 }
[augment]
scheme = "loey2020"
copies = 2
[[protocol]]
kind = "features"
backbones = ["efficientnet_lite0"]
classifiers = ["lda", "knn1"]
folds = 2
[[protocol]]
kind = "learning-curve"
augment = false
backbones = ["efficientnet_lite0"]
classifiers = ["knn1"]
folds = 2
fractions = [0.5, 1.0]
repeats = 1
[[protocol]]
kind = "tuned"
augment = false
backbones = ["efficientnet_lite0"]
grid = { "svm-linear" = { C = [1] } }
folds = 2
inner_folds = 2
"""


@pytest.mark.slow
def test_records_the_project_writes_pass_and_each_protocols_cells_are_checked(tmp_path, capsys):
    """features (augmented: a transforms table), learning-curve and tuned cells from a run."""
    from bench.runner import run_suite
    from bench.suite import load_suite

    suite_file = tmp_path / "s.toml"
    suite_file.write_text(TINY_SUITE)
    _, path = run_suite(load_suite(str(suite_file)), results_dir=tmp_path / "r", progress=False)
    record = read_run_record(path)
    assert {c.protocol for c in record.cells} == {"features", "learning-curve", "tuned"}
    assert record.transforms and all(c.complete for c in record.cells)
    assert main(["report", str(path), "--format", "md"]) == 0
    capsys.readouterr()
    for i, cell in enumerate(record.cells):
        raw = json.loads(path.read_text())
        raw["cells"][i]["metrics"]["pooled"]["recall"] = 0.01
        with pytest.raises(
            RecordError, match=rf"cells\[{i}\]\.metrics\.pooled\.recall: stored"
        ) as info:
            read_run_record(_write(tmp_path, raw))
        assert f"(cell {cell.id};" in str(info.value)
