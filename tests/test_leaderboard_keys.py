"""Leaderboard rows: LEAKY never ranked with leakage-safe, datasets told apart by fingerprint,
suite-set options visible, units counted."""

from __future__ import annotations

import copy

from fixtures.records import make_cell, make_record, write

from bench.cli import main
from bench.leaderboard import build


def _rows(table):
    return [dict(zip(table.headers, row)) for row in table.rows]


def _record(run_id, accuracy=0.8, **cell_kwargs):
    return make_record(
        [
            make_cell(
                classifier="svm-linear", label="SVM (linear)", accuracy=accuracy, **cell_kwargs
            )
        ],
        run_id=run_id,
        dataset="aria",
    )


def test_leaky_rows_are_never_ranked_with_safe_ones(tmp_path):
    write(_record("r-safe", accuracy=0.8), tmp_path)
    write(_record("r-leaky", accuracy=0.99, split_kind="paper-leaky"), tmp_path)
    for latest in (False, True):
        (safe,), _ = build(tmp_path, latest=latest)
        assert [r["Run"] for r in _rows(safe)] == ["r-safe"]
        assert any("LEAKY splits left out" in note for note in safe.footnotes)
    (safe, leaky), _ = build(tmp_path, include_leaky=True)
    assert [r["Run"] for r in _rows(safe)] == ["r-safe"]
    assert [r["Run"] for r in _rows(leaky)] == ["r-leaky"]
    assert "LEAKY" in leaky.title and "ranked only among themselves" in leaky.caption
    assert all(not d["leaky"] for d in safe.data) and all(d["leaky"] for d in leaky.data)


def test_same_name_other_fingerprint_is_another_row(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    parent = _record("r-parent", accuracy=0.7)
    parent["dataset"]["fingerprint"] = "aaaaaaaa11112222"
    subset = _record("r-subset", accuracy=0.95, n_sources=40)
    subset["dataset"]["fingerprint"] = "bbbbbbbb33334444"
    # same fingerprint, fewer images used (undersampled): its samples index those 56 images
    balanced = _record("r-balanced", accuracy=0.7, n_sources=56)
    balanced["dataset"]["fingerprint"] = parent["dataset"]["fingerprint"]
    for record in (parent, subset, balanced):
        write(record, tmp_path)
    (table,), _ = build(tmp_path)
    rows = _rows(table)
    assert {r["Run"] for r in rows} == {"r-parent", "r-subset", "r-balanced"}
    assert {r["Dataset"] for r in rows} == {
        "aria (fp aaaaaaaa, 60 images)",
        "aria (fp aaaaaaaa, 56 images)",  # its balanced run: same fingerprint, fewer images
        "aria (fp bbbbbbbb, 40 images)",
    }
    (only,), _ = build(tmp_path, dataset="bbbbbbbb")
    assert [r["Run"] for r in _rows(only)] == ["r-subset"]
    assert main(["leaderboard", str(tmp_path), "--dataset", "aria"]) == 0
    assert "aaaaaaaa" in capsys.readouterr().out


def test_options_set_by_the_suite_are_shown_and_keep_rows_apart(tmp_path):
    default = _record("r-default", accuracy=0.9)
    tuned = _record("r-tuned", accuracy=0.8)
    tuned["cells"][0]["classifier_options"] = {"C": 10.0}
    six = make_record(
        [
            make_cell(
                protocol="finetune", classifier="finetune", label="Fine-tuned", protocol_index=0
            )
        ],
        run_id="r-6ep",
        dataset="aria",
    )
    three = copy.deepcopy(six)
    three["run_id"] = "r-3ep"
    for record, epochs in ((six, 6), (three, 3)):
        record["suite"]["config"] = {
            "protocol": [{"kind": "finetune", "settings": {"epochs": epochs, "device": "cuda"}}],
            "backbone": {"alexnet": {"layer": "fc6"}},
        }
    for record in (default, tuned, six, three):
        write(record, tmp_path)
    (table,), _ = build(tmp_path)
    options = {r["Run"]: r["Options"] for r in _rows(table)}
    assert options["r-default"] == "-"
    assert options["r-tuned"] == "clf.C=10"
    assert options["r-6ep"] == "bb.layer=fc6, epochs=6"  # device: speed only, not shown
    assert options["r-3ep"] == "bb.layer=fc6, epochs=3"


def test_units_column_counts_source_images(tmp_path):
    write(_record("r-x5", copies=5, n_sources=60), tmp_path)
    (table,), _ = build(tmp_path)
    (row,) = _rows(table)
    assert row["n"] == "300" and row["Units"] == "60 source images"
    assert "aug=loey2020 x5" in row["Options"]
