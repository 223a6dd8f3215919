"""Estimates for long work: measured throughput in the cache root, dry-run ETAs, run ETAs."""

from __future__ import annotations

import json
import time

import pytest

from bench.cli import main
from bench.throughput import ThroughputStore, describe_seconds, key_of

SYNTHETIC = """
[data]
dataset = "synthetic"
options = {{ n_per_class = {n}, size = 64 }}
"""
SUITE = (
    """
[suite]
name = "eta"
"""
    + SYNTHETIC
    + """[[protocol]]
kind = "features"
backbones = ["efficientnet_lite0"]
classifiers = ["lda"]
folds = 2
[[protocol]]
kind = "finetune"
backbones = ["tiny"]
holdout = 0.34
settings = {{ epochs = {epochs}, batch_size = 4 }}
"""
)


def _suite(tmp_path, n: int, epochs: int):
    path = tmp_path / f"eta-{n}-{epochs}.toml"
    path.write_text(SUITE.format(n=n, epochs=epochs))
    return str(path)


def test_store_round_trip_staleness_and_bad_files(tmp_path):
    store = ThroughputStore(tmp_path)
    assert store.estimate("extract|x|cpu", 100) is None
    store.record("extract|x|cpu", 50, 2.0)  # 25 images/s
    store.record("extract|x|cpu", 10, 0.01)  # too short to mean anything: ignored
    store.save()
    again = ThroughputStore(tmp_path)
    assert again.estimate("extract|x|cpu", 100) == 4.0
    data = json.loads((tmp_path / "throughput.json").read_text())
    data["rates"]["extract|x|cpu"]["measured"] = time.time() - 400 * 86400
    (tmp_path / "throughput.json").write_text(json.dumps(data))
    assert ThroughputStore(tmp_path).estimate("extract|x|cpu", 100) is None  # stale
    (tmp_path / "throughput.json").write_text("{not json")
    assert ThroughputStore(tmp_path).estimate("extract|x|cpu", 100) is None
    assert describe_seconds(None) == "no estimate yet"
    assert describe_seconds(30) == "~30 s" and describe_seconds(600) == "~10 min"
    assert describe_seconds(3 * 3600) == "~3.0 h"


def test_dry_run_says_no_estimate_then_estimates_from_the_last_run(tmp_path, capsys, monkeypatch):
    from test_finetune import register_tiny

    register_tiny()
    cache = tmp_path / "cache"
    monkeypatch.setenv("LEUKOBENCH_CACHE", str(cache))
    first = _suite(tmp_path, 6, 1)
    assert main(["run", first, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "no estimate yet" in out and "fine-tuning on the CPU" in out

    assert main(["run", first, "--results-dir", str(tmp_path / "r")]) == 0
    text = capsys.readouterr()
    assert "run ETA" in text.err and "run done" in text.err  # a line per finished job
    rates = json.loads((cache / "throughput.json").read_text())["rates"]
    assert key_of("extract", "efficientnet_lite0", "cpu") in rates
    assert any(k.startswith("train|tiny|cpu|") for k in rates)

    bigger = _suite(tmp_path, 9, 2)  # new images to extract, new training to do
    assert main(["run", bigger, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "estimated time: ~" in out
    assert "no estimate yet" not in out.split("estimated time")[1]

    assert main(["run", first, "--dry-run"]) == 0  # everything of this suite is done
    assert "nothing to do" in capsys.readouterr().out


def test_cache_info_shows_resumable_run_state(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    fold = cache / "runs" / "abc123" / "fold-00"
    fold.mkdir(parents=True)
    (fold / "state.pt").write_bytes(b"x" * 4096)
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["cache", "--cache-dir", str(cache), "info"]) == 0
    out = capsys.readouterr().out
    assert "resumable run state" in out and "1 cell(s), 1 fold(s)" in out and "4.0 KB" in out


ADVICE_HEAD = '\n[suite]\nname = "advice"\n' + SYNTHETIC
ADVICE = (
    ADVICE_HEAD
    + """[[protocol]]
kind = "features"
backbones = ["efficientnet_lite0"]
classifiers = ["lda", "svm-linear", "svm-gaussian", "svm-linear-approx"]
folds = 2
"""
)


def _plan_notes(out: str) -> list[str]:
    """The dry run's advice lines for protocol 0."""
    return [line for line in out.splitlines() if line.startswith("note: protocol[0]")]


def test_dry_run_says_which_exact_fits_will_be_slow(tmp_path, capsys, monkeypatch):
    """Before any image is read: exact SVMs on folds past the limit, with their approximation."""
    from plugins.fast_estimators import svm

    monkeypatch.setenv("LEUKOBENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "advice.toml"
    path.write_text(ADVICE.format(n=10))  # 20 images, 2 folds: 10 training rows each
    monkeypatch.setattr(svm, "LARGE_FOLD_ROWS", 9)
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    notes = _plan_notes(out)
    assert len(notes) == 2, out  # the two exact SVMs; LDA and the approximation say nothing
    linear = next(n for n in notes if "'linear'" in n)
    assert "efficientnet_lite0" in linear and "10 training rows per fold" in linear
    assert "svm-linear-approx" in linear
    assert any("svm-gaussian-nystroem" in n for n in notes)
    monkeypatch.setattr(svm, "LARGE_FOLD_ROWS", 10)  # "more than": 10 rows say nothing
    assert main(["run", str(path), "--dry-run"]) == 0
    assert "note: protocol" not in capsys.readouterr().out


OTHER_TABLES = {
    "tuned": """
[[protocol]]
kind = "tuned"
backbones = ["efficientnet_lite0"]
grid = { "svm-gaussian" = { C = [0.1, 1] }, "logreg" = { C = [0.1, 1] } }
folds = 2
inner_folds = 2
""",
    "learning-curve": """
[[protocol]]
kind = "learning-curve"
backbones = ["efficientnet_lite0"]
classifiers = ["lda", "svm-gaussian"]
folds = 2
fractions = [0.5, 1.0]
repeats = 1
""",
}


@pytest.mark.parametrize("kind", sorted(OTHER_TABLES))
def test_other_fitting_protocols_give_the_same_advice(kind, tmp_path, capsys, monkeypatch):
    from plugins.fast_estimators import svm

    monkeypatch.setenv("LEUKOBENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "other.toml"
    path.write_text(ADVICE_HEAD.format(n=10) + OTHER_TABLES[kind])
    monkeypatch.setattr(svm, "LARGE_FOLD_ROWS", 9)
    assert main(["run", str(path), "--dry-run"]) == 0
    notes = _plan_notes(capsys.readouterr().out)
    assert len(notes) == 1 and "svm-gaussian-nystroem" in notes[0], notes
    assert f"note: protocol[0] {kind} efficientnet_lite0" in notes[0]
