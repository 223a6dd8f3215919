"""`leukobench run` of a fine-tuning suite, interrupted and run again, ends as an uninterrupted run."""

from __future__ import annotations

import json

import pytest

from bench.cli import main
from bench.protocols.finetune import training as ft

SUITE = """
[suite]
name = "resume"
[data]
dataset = "synthetic"
options = { n_per_class = 6, size = 64 }
[[protocol]]
kind = "finetune"
backbones = ["timm/resnet18"]
holdout = 0.34
settings = { epochs = 2, batch_size = 4, lr = 1e-3, optimizer = "adamw" }
[backbone."timm/resnet18"]
weights = "none"
"""


def _run(suite, results, capsys) -> tuple[int, dict | None]:
    code = main(["run", str(suite), "--results-dir", str(results), "--no-progress"])
    capsys.readouterr()
    files = sorted(results.glob("*.json"), key=lambda p: p.stat().st_mtime)
    return code, (json.loads(files[-1].read_text()) if files else None)


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch, capsys):
    suite = tmp_path / "resume.toml"
    suite.write_text(SUITE)

    monkeypatch.setenv("LEUKOBENCH_CACHE", str(tmp_path / "cache-whole"))
    code, whole = _run(suite, tmp_path / "whole", capsys)
    assert code == 0 and whole["status"] == "complete"

    monkeypatch.setenv("LEUKOBENCH_CACHE", str(tmp_path / "cache-killed"))
    real_save = ft.save_training_state
    epochs_saved = []

    def save_then_die(path, state):
        real_save(path, state)
        epochs_saved.append(state["epoch"])
        if state["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(ft, "save_training_state", save_then_die)
    code, killed = _run(suite, tmp_path / "killed", capsys)
    assert code == 130 and epochs_saved == [1]
    assert killed["status"] == "incomplete" and killed["cells"] == []

    monkeypatch.setattr(ft, "save_training_state", real_save)
    code, resumed = _run(suite, tmp_path / "resumed", capsys)
    assert code == 0 and resumed["status"] == "complete"
    a, b = whole["cells"][0], resumed["cells"][0]
    assert b["training"]["history"] == a["training"]["history"]
    assert b["folds"][0]["score"] == a["folds"][0]["score"]
    assert b["metrics"]["pooled"] == a["metrics"]["pooled"]
