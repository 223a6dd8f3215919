"""MLflow tracking against real stores: a SQLite file and an `mlflow server` over HTTP."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from bench.records import read_run_record
from bench.registry import get_registry
from bench.tracking import open_tracking

mlflow = pytest.importorskip("mlflow", reason="needs the [mlflow] extra")
from mlflow.tracking import MlflowClient  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference" / "ci-reference.json"


def _track(uri: str, record_path: Path = REFERENCE, console: Console | None = None):
    record = read_run_record(record_path)
    tracking = open_tracking(["mlflow"], {"uri": uri}, get_registry(), console)
    tracking.notify(record, record.path, final=True)
    return record, tracking


def _runs(uri: str):
    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(ids)


def test_sqlite_store_gets_one_run_per_suite_run_and_a_nested_run_per_cell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # artifacts of a sqlite store go to ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    record, tracking = _track(uri)
    assert not tracking.failed
    client, runs = _runs(uri)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == len(record.complete_cells())
    parent = parents[0]
    assert parent.info.run_name == record.run_id
    assert parent.data.params["dataset.fingerprint"] == record.fingerprint
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert f"{REFERENCE.name}" in artifacts and f"{record.run_id}-report.md" in artifacts
    assert "figures" in artifacts
    by_cell = {r.data.tags["leukobench.cell"]: r for r in children}
    for cell in record.complete_cells():
        run = by_cell[cell.id]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.params["backbone"] == cell.backbone
        assert run.data.params["classifier"] == cell.classifier
        assert run.data.params["split"] == cell.split.kind
        assert run.data.metrics["accuracy"] == pytest.approx(cell.metrics["pooled"]["accuracy"])
        low, high = cell.metrics["ci"]["accuracy"]
        assert run.data.metrics["accuracy_ci_low"] == pytest.approx(low)
        assert run.data.metrics["accuracy_ci_high"] == pytest.approx(high)
        steps = client.get_metric_history(run.info.run_id, "fold_accuracy")
        assert sorted(m.step for m in steps) == [f.fold for f in cell.folds]


def test_finetune_curves_are_logged_per_iteration(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = next(
        p
        for p in sorted((REFERENCE.parents[1]).glob("*.json"))
        if '"training"' in p.read_text(encoding="utf-8")
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    record, tracking = _track(uri, source)
    assert not tracking.failed
    client, runs = _runs(uri)
    cell = next(c for c in record.complete_cells() if c.training)
    run = next(r for r in runs if r.data.tags.get("leukobench.cell") == cell.id)
    curve = client.get_metric_history(run.info.run_id, "train_loss")
    assert len(curve) >= 2 and curve == sorted(curve, key=lambda m: m.step)
    assert run.data.params["finetune.lr"]


def test_unreachable_server_is_one_warning_naming_the_uri(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    uri = f"http://127.0.0.1:{port}"
    console = Console(file=(tmp_path / "log.txt").open("w"), width=200)
    record, tracking = _track(uri, console=console)
    tracking.notify(record, record.path, final=True)  # a second call stays quiet
    console.file.close()
    text = (tmp_path / "log.txt").read_text()
    assert text.count("warning") == 1 and uri in text and "result record is safe" in text
    assert "mlflow" in tracking.failed


def test_bad_sqlite_uri_is_a_warning_not_a_crash(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    uri = f"sqlite:///{tmp_path / 'a-file' / 'x.db'}"
    record, tracking = _track(uri)
    assert "mlflow" in tracking.failed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_server_over_http(tmp_path):
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if exe is None:
        pytest.skip("the mlflow command is not installed")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [
            exe,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 90
        import urllib.request

        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        "mlflow server did not start: "
                        + (tmp_path / "server.log").read_text()[-2000:]
                    )
                time.sleep(0.5)
        record, tracking = _track(uri)
        assert not tracking.failed
        client, runs = _runs(uri)
        assert len(runs) == 1 + len(record.complete_cells())
        parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
        artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
        assert REFERENCE.name in artifacts
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_tensorboard_writes_fine_tuning_curves(tmp_path):
    pytest.importorskip("tensorboard", reason="needs the [tensorboard] extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    source = next(
        p
        for p in sorted((REFERENCE.parents[1]).glob("*.json"))
        if '"training"' in p.read_text(encoding="utf-8")
    )
    record = read_run_record(source)
    tracking = open_tracking(["tensorboard"], {"uri": str(tmp_path / "tb")}, get_registry(), None)
    tracking.notify(record, record.path, final=True)
    assert not tracking.failed
    cell = next(c for c in record.complete_cells() if c.training)
    folders = [p.parent for p in (tmp_path / "tb").rglob("events.out.tfevents.*")]
    assert len(folders) == len(record.complete_cells())
    acc = EventAccumulator(str(next(f for f in folders if "finetune" in f.name))).Reload()
    assert "train_loss" in acc.Tags()["scalars"]
    assert len(acc.Scalars("train_loss")) >= 2
    assert cell.training


def test_tensorboard_folder_from_a_path_a_file_uri_or_another_trackers_uri(tmp_path):
    from plugins.tensorboard_tracking import log_root

    assert log_root(None) == Path("runs") and log_root(str(tmp_path)) == tmp_path
    assert log_root(tmp_path.as_uri()) == tmp_path
    for uri in ("sqlite:///mlflow.db", "http://127.0.0.1:5000", "https://host/x"):
        assert log_root(uri) == Path("runs")  # MLflow's store when both trackers run


TINY = """
[suite]
name = "tiny-tracked"
[data]
dataset = "synthetic"
options = { n_per_class = 8, size = 64 }
[[protocol]]
kind = "features"
backbones = ["efficientnet_lite0"]
classifiers = ["lda", "knn1"]
folds = 2
"""


def _cli(argv, capsys):
    from bench.cli import main

    code = main(argv)
    out = capsys.readouterr()
    return code, out.out + out.err


def test_run_with_track_mlflow_logs_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, text = _cli(
        [
            "run",
            "tiny.toml",
            "--no-progress",
            "--results-dir",
            "r",
            "--track",
            "mlflow",
            "--tracking-uri",
            uri,
        ],
        capsys,
    )
    assert code == 0, text
    record = read_run_record(next((tmp_path / "r").glob("*.json")))
    client, runs = _runs(uri)
    assert len(runs) == 1 + len(record.cells) == 3
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.run_name == record.run_id and parent.info.status == "FINISHED"


def test_run_survives_a_dead_tracking_server(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    uri = f"http://127.0.0.1:{_free_port()}"
    code, text = _cli(
        [
            "run",
            "tiny.toml",
            "--no-progress",
            "--results-dir",
            "r",
            "--track",
            "mlflow",
            "--tracking-uri",
            uri,
        ],
        capsys,
    )
    assert code == 0, text
    assert text.count("tracking: mlflow") == 1 and uri in text
    record = read_run_record(next((tmp_path / "r").glob("*.json")))
    assert record.status == "complete"


def test_unknown_tracker_is_exit_2_before_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    code, text = _cli(["run", "tiny.toml", "--results-dir", "r", "--track", "mlfow"], capsys)
    assert code == 2 and "mlflow" in text and "Traceback" not in text
    assert not list((tmp_path / "r").glob("*.json"))  # no result record (the folder may be checked)
    # a dry run (the CI preflight) refuses it too, from --track or the suite's [run] track
    code, text = _cli(["run", "tiny.toml", "--dry-run", "--track", "mlfow"], capsys)
    assert code == 2 and "did you mean 'mlflow'" in text
    code, text = _cli(
        ["run", "tiny.toml", "--dry-run", "--set", "run.track=['tensorbord']"], capsys
    )
    assert code == 2 and "did you mean 'tensorboard'" in text
