"""The regression gate refuses what it cannot judge: missing cells, empty or incomplete
candidates (exit 1), and records of another dataset, split, fold count or seed (exit 2)."""

from __future__ import annotations

import copy

import pytest
from fixtures.records import binary_record, make_cell, make_record, write

from bench.cli import main
from bench.compare import compare_records, comparison_table
from bench.errors import UserError


def _model1(**kwargs):
    """Model 1 cells: svm-linear, svm-cubic, tree on one grouped 5-fold split."""
    specs = [("svm-linear", "SVM (linear)"), ("svm-cubic", "SVM (cubic)"), ("tree", "Tree")]
    return [make_cell(classifier=c, label=label, **kwargs) for c, label in specs]


@pytest.fixture
def files(tmp_path):
    def put(record, name):
        return str(write(record, tmp_path, name))

    return put


def _main(capsys, *argv):
    code = main(["compare", *argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "internal error" not in out.err
    return code, out.out, out.err


def test_replaced_cell_is_missing_and_fails(files, capsys):
    base = make_record(_model1())
    cells = [c for c in _model1() if c["classifier"] != "svm-linear"]
    cells.append(make_cell(classifier="dt", label="Decision tree"))
    cand = make_record(cells, run_id="20260102T000000Z-test-cand")
    code, out, err = _main(capsys, files(base, "b"), files(cand, "c"))
    assert code == 1
    assert "svm-linear" in err and "MISSING" in err
    assert "MISSING" in out and "only-candidate" in out
    code, _, _ = _main(capsys, files(base, "b"), files(cand, "c"), "--allow-missing")
    assert code == 0


def test_candidate_without_completed_cells_fails_even_when_missing_is_allowed(files, capsys):
    base = make_record(_model1())
    cand = copy.deepcopy(base)
    cand.update(cells=_model1(status="failed"), status="incomplete", run_id="20260102T000000Z-e")
    for extra in ([], ["--allow-missing"]):
        code, _, err = _main(capsys, files(base, "b"), files(cand, "c"), *extra)
        assert code == 1 and "no completed cell" in err
    empty = copy.deepcopy(base)
    empty["cells"], empty["status"] = [], "incomplete"
    cmp = compare_records(base, empty, allow_missing=True)
    assert cmp.exit_code == 1 and "no completed cell" in cmp.problems[0]


def test_incomplete_candidate_fails_unless_allowed(files, capsys):
    base = make_record(_model1())
    interrupted = make_record(_model1()[:2], status="incomplete", run_id="20260102T000000Z-x")
    code, _, err = _main(capsys, files(base, "b"), files(interrupted, "c"))
    assert code == 1 and "is incomplete" in err and "MISSING" in err
    code, out, _ = _main(capsys, files(base, "b"), files(interrupted, "c"), "--allow-missing")
    assert code == 0 and "MISSING" in out  # still listed
    # complete cells, but the run says it is incomplete (e.g. killed while writing)
    cmp = compare_records(base, {**copy.deepcopy(base), "status": "incomplete"})
    assert cmp.exit_code == 1 and cmp.problems


@pytest.mark.parametrize(
    "change, named",
    [
        ("dataset", "dataset fingerprint"),
        ("split", "split grouped-kfold 5-fold vs paper-leaky 5-fold"),
        ("folds", "split grouped-kfold 5-fold vs grouped-kfold 2-fold"),
        ("seeds", "seeds [0] vs [1]"),
        ("images", "images used differ"),
    ],
)
def test_records_that_are_not_comparable_are_refused(files, capsys, change, named):
    base = make_record(_model1())
    if change == "split":
        cand = make_record(_model1(split_kind="paper-leaky"))
    elif change == "folds":
        cand = make_record(_model1(folds=2))
    elif change == "seeds":
        cand = make_record([{**c, "id": c["id"]} for c in _model1(seed=1)])
        cand["cells"] = [{**c, "id": b["id"]} for c, b in zip(cand["cells"], base["cells"])]
    elif change == "dataset":
        cand = copy.deepcopy(base)
        cand["dataset"].update(fingerprint="sha256:other", name="aria")
    else:  # a balanced subset: same fingerprint, fewer images used (and indexed)
        cand = make_record(_model1(n_sources=58))
    code, _, err = _main(capsys, files(base, "b"), files(cand, "c"))
    assert code == 2, err
    assert named in err and "--force" in err and len(err.strip().splitlines()) == 1
    code, out, err = _main(capsys, files(base, "b"), files(cand, "c"), "--force")
    assert code in (0, 1) and "FORCED despite" in out + err


def test_rows_show_the_folds_each_record_used():
    base = make_record(_model1())
    cand = make_record(_model1(folds=2))
    with pytest.raises(UserError, match="2-fold"):
        compare_records(base, cand)
    table = comparison_table(compare_records(base, cand, force=True))
    assert all("grouped 5-fold / candidate grouped 2-fold" in row[0] for row in table.rows)
    same = comparison_table(compare_records(base, copy.deepcopy(base)))
    assert all("5-fold" in row[0] and "candidate" not in row[0] for row in same.rows)
    two = make_record(_model1(folds=2))
    assert all("2-fold" in row[0] for row in comparison_table(compare_records(two, two)).rows)


def test_synthetic_reference_against_a_real_run_is_refused(files, capsys):
    reference = binary_record()
    real = binary_record(dataset="aria_all_pbs_binary")
    real["dataset"]["fingerprint"] = "sha256:5d8cad2325731125e3fb"
    code, _, err = _main(capsys, files(reference, "ref"), files(real, "real"))
    assert code == 2 and "sha256:test"[7:] in err and "5d8cad23" in err
