"""``leukobench compare``: per-cell differences and the exit code of the regression gate."""

from __future__ import annotations

import copy

import pytest
from fixtures.records import binary_record, make_cell, write

from bench.cli import main
from bench.compare import compare_records, comparison_table
from bench.errors import UserError


@pytest.fixture(scope="module")
def baseline():
    return binary_record()


def _replace(record, cell_id, new_cell):
    out = copy.deepcopy(record)
    out["cells"] = [new_cell if c["id"] == cell_id else c for c in out["cells"]]
    return out


def test_identical_runs_pass(baseline):
    cmp = compare_records(baseline, copy.deepcopy(baseline))
    assert cmp.exit_code == 0
    assert {d.status for d in cmp.diffs} == {"ok"}
    assert all(d.delta == 0 for d in cmp.diffs)


def test_drop_beyond_tolerance_fails(baseline):
    worse = make_cell(classifier="svm-cubic", label="SVM (cubic)", accuracy=0.75)
    cand = _replace(baseline, baseline["cells"][0]["id"], worse)
    cmp = compare_records(baseline, cand, tolerance=0.01)
    assert cmp.exit_code == 1
    (reg,) = cmp.regressions
    assert reg.key == baseline["cells"][0]["id"] and reg.status == "DROP"
    expected = (
        worse["metrics"]["pooled"]["accuracy"]
        - baseline["cells"][0]["metrics"]["pooled"]["accuracy"]
    )
    assert reg.delta == pytest.approx(expected)
    # a tolerance wider than the drop (and the CI rule off) lets it pass
    assert compare_records(baseline, cand, tolerance=0.5, use_ci=False).exit_code == 0


def test_ci_rule(baseline):
    """Within tolerance, but the candidate's CI upper bound is below the baseline value."""
    cand = copy.deepcopy(baseline)
    cell = cand["cells"][0]
    base_acc = baseline["cells"][0]["metrics"]["pooled"]["accuracy"]
    cell["metrics"]["pooled"]["accuracy"] = base_acc - 0.005
    cell["metrics"]["ci"]["accuracy"] = [base_acc - 0.01, base_acc - 0.002]
    cmp = compare_records(baseline, cand, tolerance=0.01)
    assert [d.status for d in cmp.regressions] == ["CI-DROP"]
    assert compare_records(baseline, cand, tolerance=0.01, use_ci=False).exit_code == 0


def test_improvement_and_one_sided_cells(baseline):
    better = make_cell(classifier="tree", label="Decision tree", accuracy=0.99)
    cand = _replace(baseline, baseline["cells"][1]["id"], better)
    extra = make_cell(backbone="convnext_tiny", classifier="svm-linear", label="SVM (linear)")
    cand["cells"].append(extra)
    dropped_id = cand["cells"][3]["id"]
    del cand["cells"][3]
    cmp = compare_records(baseline, cand)
    status = {d.key: d.status for d in cmp.diffs}
    assert status[better["id"]] == "better"
    assert status[extra["id"]] == "only-candidate"
    assert status[dropped_id] == "MISSING"  # completed in the baseline: fails the gate
    assert cmp.exit_code == 1
    assert compare_records(baseline, cand, allow_missing=True).exit_code == 0


def test_failed_candidate_cell_is_a_regression(baseline):
    failed = make_cell(classifier="svm-cubic", label="SVM (cubic)", status="failed")
    cand = _replace(baseline, baseline["cells"][0]["id"], failed)
    cmp = compare_records(baseline, cand)
    assert [d.status for d in cmp.regressions] == ["FAILED"]


def test_match_by_key_when_ids_differ(baseline):
    cand = copy.deepcopy(baseline)
    for c in cand["cells"]:
        c["id"] = "renamed-" + c["id"]
    cmp = compare_records(baseline, cand)
    assert {d.status for d in cmp.diffs} == {"ok"} and len(cmp.diffs) == len(baseline["cells"])


def test_table_and_bad_options(baseline):
    t = comparison_table(compare_records(baseline, baseline))
    assert t.headers[-1] == "Status" and len(t.rows) == len(baseline["cells"])
    assert "no regression" in t.caption
    with pytest.raises(UserError):
        compare_records(baseline, baseline, metric="nope")
    with pytest.raises(UserError):
        compare_records(baseline, baseline, tolerance=-1)


def test_cli_exit_codes(tmp_path, baseline, capsys):
    base = write(baseline, tmp_path, "base")
    same = write(copy.deepcopy(baseline), tmp_path, "same")
    worse = binary_record(shift=-0.2)
    cand = write(worse, tmp_path, "worse")
    assert main(["compare", str(base), str(same)]) == 0
    capsys.readouterr()
    assert main(["compare", str(base), str(cand), "--tolerance", "0.01"]) == 1
    err = capsys.readouterr().err
    assert "REGRESSION" in err
    out_md = tmp_path / "diff.md"
    assert main(["compare", str(base), str(cand), "--format", "md", "--out", str(out_md)]) == 1
    assert "DROP" in out_md.read_text()
    assert main(["compare", str(base), str(tmp_path / "missing.json")]) == 2


def test_perfect_scores_do_not_trip_the_ci_rule():
    """Wilson's upper bound at 100% is 0.9999999999999999: equal runs must still pass."""
    perfect = binary_record(shift=1.0)
    assert perfect["cells"][0]["metrics"]["pooled"]["accuracy"] == 1.0
    for cell in perfect["cells"]:
        cell["metrics"]["ci"]["accuracy"][1] = 0.9999999999999999  # as bench.stats gives it
    assert compare_records(perfect, copy.deepcopy(perfect)).exit_code == 0
