"""Table 1 / Table 2 from fabricated result records, in every output format."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from fixtures.records import binary_record, make_cell, make_record, multiclass_record, write
from sklearn.metrics import accuracy_score, precision_score, recall_score

from bench.cli import main
from bench.errors import UserError
from bench.render import FORMATS, render_text
from bench.report import (
    cell_estimate,
    load_literature,
    methods,
    recompute_metrics,
    split_label,
    table1,
    table2,
)


def _pooled(cell):
    y_true = np.concatenate([f["y_true"] for f in cell["folds"]])
    y_pred = np.concatenate([f["y_pred"] for f in cell["folds"]])
    return y_true, y_pred


def _pct(x: float) -> str:
    return f"{x * 100:.1f}"


@pytest.fixture(scope="module")
def record():
    return binary_record()


def test_table1_numbers_match_predictions(record):
    (t, *_) = table1(record)
    cell = record["cells"][0]  # alexnet + SVM (cubic)
    y_true, y_pred = _pooled(cell)
    acc = accuracy_score(y_true, y_pred)
    prec = precision_score(y_true, y_pred, pos_label=1)
    rec = recall_score(y_true, y_pred, pos_label=1)
    tn = int(((y_true == 0) & (y_pred == 0)).sum())
    spec = tn / int((y_true == 0).sum())
    row = t.rows[0]
    assert row[0] == "alexnet + SVM (cubic)"
    assert row[2].startswith(_pct(prec) + " [")
    assert row[3].startswith(_pct(rec) + " [")
    assert row[4].startswith(_pct(acc) + " [")
    assert row[5].startswith(_pct(spec) + " [")
    assert t.data[0]["metrics"]["accuracy"]["mean"] == pytest.approx(acc)


def test_recompute_agrees_with_stored(record):
    for cell in record["cells"]:
        pooled, ci = recompute_metrics(cell)
        stored = cell["metrics"]
        for name in ("precision", "recall", "accuracy", "specificity", "f1", "mcc", "roc_auc"):
            assert pooled[name] == pytest.approx(stored["pooled"][name]), name
        assert ci["accuracy"] == pytest.approx(stored["ci"]["accuracy"])


def test_missing_metrics_are_recomputed(record):
    cell = {k: v for k, v in record["cells"][1].items() if k != "metrics"}
    est = cell_estimate(cell, "accuracy")
    y_true, y_pred = _pooled(cell)
    assert est.mean == pytest.approx(accuracy_score(y_true, y_pred))
    assert est.low < est.mean < est.high


def test_grouping_labels_and_marks(record):
    (t, *_) = table1(record)
    assert t.groups == ["Model 1"] * 4 + ["Model 2"] * 2
    names = [r[0] for r in t.rows]
    assert "alexnet + K-NN [LEAKY]" in names
    assert "resnet18 + SVM (linear) (not pretrained)" in names
    assert "fine-tuned alexnet (hold-out 80/20)" in names
    assert "fine-tuned alexnet (5-fold)" in names
    assert any("LEAKY" in n for n in t.footnotes)
    assert any("not pretrained" in n for n in t.footnotes)
    assert t.styles[names.index("alexnet + K-NN [LEAKY]")] == "bold red"
    for part in ("Dataset synthetic", "n=60", "'leukemia'", "seeds: 0", "grouped 5-fold"):
        assert part in t.caption


def test_extra_metrics_columns(record):
    (t, *_) = table1(record, extra=("f1", "mcc", "roc_auc", "balanced_accuracy"))
    assert t.headers[-4:] == ["F1", "MCC", "ROC AUC", "Balanced acc."]
    mcc = record["cells"][0]["metrics"]["pooled"]["mcc"]
    assert t.rows[0][-3] == f"{mcc:.3f}"
    with pytest.raises(UserError, match="unknown metric"):
        table1(record, extra=("nope",))


def test_seeds_are_aggregated():
    rec = binary_record(seeds=(0, 1, 2))
    (t, *_) = table1(rec)
    assert len(t.rows) == 6
    svm = [c for c in rec["cells"] if c["classifier"] == "svm-cubic"]
    mean = np.mean([c["metrics"]["pooled"]["accuracy"] for c in svm])
    assert t.data[0]["metrics"]["accuracy"]["mean"] == pytest.approx(mean)
    assert t.data[0]["metrics"]["accuracy"]["n_seeds"] == 3
    assert "mean over seeds" in t.caption


def test_failed_cells_skipped_and_caption_says_incomplete():
    cells = [
        make_cell(accuracy=0.9),
        make_cell(classifier="tree", label="Decision tree", status="failed"),
    ]
    rec = make_record(cells)
    (t, *_) = table1(rec)
    assert len(t.rows) == 1 and "INCOMPLETE" in t.caption


def test_multiclass_per_class_and_macro():
    rec = multiclass_record()
    t, per_class = table1(rec)
    assert "Precision (macro)" in t.headers and "Accuracy" in t.headers
    assert per_class.key == "table1-per-class"
    assert len(per_class.rows) == 2 * 3
    cell = rec["cells"][0]
    y_true, y_pred = _pooled(cell)
    recalls = recall_score(y_true, y_pred, average=None)
    for i in range(3):
        row = per_class.rows[i]
        assert row[1] == cell["classes"][i]
        assert row[3].startswith(_pct(recalls[i]))
    assert t.rows[0][2].startswith(_pct(precision_score(y_true, y_pred, average="macro")))
    # specificity is not stored for multi-class: recomputed (macro one-vs-rest) from predictions
    spec = []
    for i in range(3):
        neg = y_true != i
        spec.append(((y_pred != i) & neg).sum() / neg.sum())
    assert t.rows[0][5].startswith(_pct(np.mean(spec)))


def test_split_labels():
    assert split_label({"kind": "grouped-kfold", "folds": 10}) == "grouped 10-fold"
    assert split_label({"kind": "grouped-holdout", "holdout": 0.2}) == "grouped hold-out 80/20"
    assert split_label({"kind": "paper-leaky", "holdout": 0.2}) == "paper-leaky hold-out 80/20"
    assert split_label({"kind": "stratified-kfold", "folds": 5}) == "stratified 5-fold"


def test_literature_has_the_papers_values():
    works = load_literature()
    by_author = {w["authors"].split()[0].rstrip(","): w for w in works}
    expected = {
        "Thanh": (0.966, 1188),
        "Vogado": (0.99, 377),
        "Rehman": (0.9778, 330),
        "Shafique": (0.9606, 260),
        "Pansombut": (0.80, 363),
        "Loey": (1.0, 2820),
    }
    for name, (acc, n) in expected.items():
        assert by_author[name]["accuracy"] == pytest.approx(acc)
        assert by_author[name]["n_images"] == n
        for key in ("year", "title", "venue", "method", "dataset", "split", "note"):
            assert by_author[name][key], (name, key)
    assert by_author["Loey"]["leaky"] is True


def test_table2_best_per_protocol(record):
    t = table2([record])
    run_rows = [d for d in t.data if d["source"] == "run"]
    # features grouped 5-fold, features paper-leaky, finetune hold-out, finetune 5-fold
    assert len(run_rows) == 4
    best_features = next(d for d in run_rows if d["protocol"] == "features" and not d["leaky"])
    grouped = [m for m in methods(record) if m.protocol == "features" and not m.leaky]
    best = max(m.estimate("accuracy").mean for m in grouped)
    assert best_features["accuracy"]["mean"] == pytest.approx(best)
    assert t.headers[3] == "Images" and t.headers[4] == "Split protocol"
    text = render_text([t], "md")
    assert "96.6" in text and "97.78" in text and "2820" in text and "LEAKY" in text


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders(record, fmt):
    tables = [*table1(record), table2([record])]
    text = render_text(tables, fmt)
    acc = _pct(record["cells"][0]["metrics"]["pooled"]["accuracy"])
    assert acc in text
    assert "LEAKY" in text
    if fmt == "json":
        data = json.loads(text)
        assert [t["key"] for t in data["tables"]] == ["table1", "table2"]
        assert data["tables"][0]["data"][0]["metrics"]["accuracy"]["mean"] == pytest.approx(
            record["cells"][0]["metrics"]["pooled"]["accuracy"]
        )
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[1][:3] == ["Model", "Method", "Split"]
    elif fmt == "latex":
        assert "\\toprule" in text
    elif fmt == "html":
        assert "<table>" in text and "<caption>" in text
    elif fmt == "md":
        assert "| Model 1 " in text


def test_cli_report_writes_file(tmp_path, record, capsys):
    path = write(record, tmp_path)
    out = tmp_path / "table.md"
    assert main(["report", str(path), "--table", "1", "--format", "md", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Table 1" in text and "Table 2" not in text
    assert main(["report", str(path), "--format", "json", "--extra-metrics"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tables"][0]["headers"][-1] == "Balanced acc."


def test_cli_report_rich_to_terminal(tmp_path, record, capsys):
    path = write(record, tmp_path)
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Table 1" in out and "Table 2" in out and "Vogado" in out


def test_cli_report_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["report", str(bad)]) == 2
    assert "bad.json" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.json")]) == 2


def test_compare_methods_paired_tests(record):
    pytest.importorskip("bench.stats")
    from bench.report import compare_methods

    t = compare_methods(record)
    # every 5-fold cell of seed 0 shares the folds; the hold-out has other folds: no pair
    pairs = {(d["a"], d["b"]) for d in t.data}
    assert ("alexnet + SVM (cubic)", "alexnet + Decision tree") in pairs
    assert len(pairs) == 10  # 5 cells on identical folds -> C(5, 2)
    assert not any("hold-out" in a or "hold-out" in b for a, b in pairs)
    row = next(d for d in t.data if d["b"] == "alexnet + Decision tree")
    assert 0.0 <= row["mcnemar_p"] <= 1.0 and 0.0 <= row["ttest_p"] <= 1.0
    assert row["folds"] == 5


@pytest.mark.parametrize("make", [binary_record, multiclass_record])
def test_records_from_bench_metrics(make):
    """Cells whose metrics block comes from bench.metrics.summarize (the runner's) report alike."""
    metrics = pytest.importorskip("bench.metrics")
    rec = make()
    for cell in rec["cells"]:
        k = len(cell["classes"])
        cell["metrics"] = metrics.summarize(
            cell["folds"], n_classes=k, positive_index=1 if k == 2 else None, n_boot=50
        )
    t = table1(rec)[0]
    for row, cell in zip(t.rows, rec["cells"], strict=True):
        y_true, y_pred = _pooled(cell)
        assert row[4].startswith(_pct(accuracy_score(y_true, y_pred)) + " [")
        avg = "binary" if k == 2 else "macro"
        assert row[3].startswith(_pct(recall_score(y_true, y_pred, average=avg)))
