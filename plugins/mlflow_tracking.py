"""MLflow tracking: one MLflow run per suite run, a nested run per cell.

Install with ``pip install 'leukobench[mlflow]'`` (the full ``mlflow`` package:
``mlflow-skinny`` has no SQLite store). Turn it on with ``[run] track =
["mlflow"]`` or ``leukobench run --track mlflow --tracking-uri URI``; without a
URI MLflow's own default applies (``$MLFLOW_TRACKING_URI``, else ``./mlruns``).

Logged: the parent run carries the suite, dataset fingerprint, seeds, device,
versions and timings, and at the end the record JSON, the Markdown report and
the figures as artifacts. Each complete cell becomes a nested run with its
parameters (protocol, backbone, classifier and options, split, seed, ...), its
pooled metrics and 95% CI bounds, per-fold metrics as steps and fine-tuning
curves per iteration.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.hookspecs import hookimpl
from bench.records import CellRecord, RunRecord
from bench.specs import TrackerSpec
from bench.tracking import Tracker

_PACKAGES = ("torch", "torchvision", "timm", "scikit-learn", "numpy", "leukobench")
_MAX_PARAM = 500


def _flat(prefix: str, options: dict[str, Any]) -> dict[str, str]:
    return {f"{prefix}.{k}": json.dumps(v, default=str)[:_MAX_PARAM] for k, v in options.items()}


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v == v and abs(v) != float("inf") else None


def cell_params(record: RunRecord, cell: CellRecord) -> dict[str, str]:
    """The parameters of a cell's nested run (all strings, as MLflow stores them)."""
    packages = record.environment.get("packages") or {}
    params = {
        "suite": record.suite.get("name", "?"),
        "protocol": cell.protocol,
        "model": cell.model,
        "backbone": cell.backbone,
        "classifier": cell.classifier,
        "label": cell.label,
        "split": cell.split.kind,
        "split.label": cell.split.label,
        "folds": str(cell.split.folds),
        "holdout": str(cell.split.holdout),
        "leaky": str(cell.split.leaky),
        "seed": str(cell.seed),
        "augmentation": json.dumps(cell.augmentation, default=str),
        "dataset": record.dataset_name,
        "dataset.fingerprint": str(record.fingerprint),
        "device": str(record.environment.get("device")),
        "pretrained": str(cell.pretrained),
        **_flat("classifier", cell.classifier_options),
        **{f"version.{k}": str(v) for k, v in packages.items() if k in _PACKAGES},
    }
    if cell.training:
        params.update(_flat("finetune", cell.training.get("settings") or {}))
    return {k: v[:_MAX_PARAM] for k, v in params.items()}


def cell_metrics(cell: CellRecord) -> list[tuple[str, float, int]]:
    """(key, value, step) triples: pooled metrics, CI bounds, per fold, training curves."""
    from bench.results import history_rows

    out: list[tuple[str, float, int]] = []
    metrics = cell.metrics or {}
    for key, value in (metrics.get("pooled") or {}).items():
        if (v := _finite(value)) is not None:
            out.append((key, v, 0))
    for key, bounds in (metrics.get("ci") or {}).items():
        if isinstance(bounds, list) and len(bounds) == 2:
            for side, value in zip(("ci_low", "ci_high"), bounds):
                if (v := _finite(value)) is not None:
                    out.append((f"{key}_{side}", v, 0))
    for fold in cell.folds:
        for key, value in fold.metrics.items():
            if (v := _finite(value)) is not None:
                out.append((f"fold_{key}", v, fold.fold))
    training = cell.training or {}
    histories = [training.get("history")] + list(training.get("fold_histories") or [])[1:]
    for k, history in enumerate(h for h in histories if h):
        prefix = "train" if k == 0 else f"fold{k}_train"
        for row in history_rows(history):
            step = int(row.get("iteration") or 0)
            for key in ("loss", "accuracy"):
                if (v := _finite(row.get(key))) is not None:
                    out.append((f"{prefix}_{key}", v, step))
    return out


class MlflowTracker(Tracker):
    """Logs a run and its cells to an MLflow tracking server or store."""

    def __init__(self, uri: str | None = None, experiment: str | None = None) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise UserError(
                "tracking with mlflow needs the mlflow package: pip install 'leukobench[mlflow]'"
            ) from None
        self.uri = uri
        self.target = uri or "MLflow's default tracking URI"
        self.experiment = experiment
        self.client = MlflowClient(tracking_uri=uri)
        self.parent: str | None = None
        self.logged: set[str] = set()
        _check_reachable(uri)

    def record_written(self, record: RunRecord, path: Path, *, final: bool) -> None:
        if self.parent is None:
            self.parent = self._start(record)
        for cell in record.cells:
            if cell.complete and cell.id not in self.logged:
                self._log_cell(record, cell)
                self.logged.add(cell.id)
        if final:
            self._finish(record, path)

    # -- the parent run --------------------------------------------------------
    def _experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(name)

    def _start(self, record: RunRecord) -> str:
        from mlflow.entities import Param, RunTag

        suite = record.suite.get("name") or "leukobench"
        exp = self._experiment_id(self.experiment or f"leukobench/{suite}")
        run = self.client.create_run(
            exp, run_name=record.run_id, tags={"leukobench.run_id": record.run_id}
        )
        rid = run.info.run_id
        packages = record.environment.get("packages") or {}
        params = {
            "suite": suite,
            "suite.config_sha256": str(record.suite.get("config_sha256")),
            "suite.path": str(record.suite.get("path")),
            "dataset": record.dataset_name,
            "dataset.fingerprint": str(record.fingerprint),
            "dataset.n_images": str(record.dataset.get("n_images")),
            "dataset.synthetic": str(record.dataset.get("synthetic")),
            "seeds": json.dumps(record.seeds),
            "device": str(record.environment.get("device")),
            "git_revision": str(record.git_revision),
            **{f"version.{k}": str(v) for k, v in packages.items() if k in _PACKAGES},
        }
        self.client.log_batch(
            rid,
            params=[Param(k, v[:_MAX_PARAM]) for k, v in params.items()],
            tags=[RunTag("leukobench.dataset", record.dataset_name)],
        )
        return rid

    def _log_cell(self, record: RunRecord, cell: CellRecord) -> None:
        from mlflow.entities import Metric, Param, RunTag

        assert self.parent is not None
        parent = self.client.get_run(self.parent)
        run = self.client.create_run(
            parent.info.experiment_id,
            run_name=cell.id,
            tags={"mlflow.parentRunId": self.parent, "leukobench.cell": cell.id},
        )
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v, step in cell_metrics(cell)]
        params = [Param(k, v) for k, v in cell_params(record, cell).items()]
        for i in range(0, max(len(metrics), 1), 900):  # MLflow takes at most 1000 per batch
            self.client.log_batch(
                run.info.run_id,
                metrics=metrics[i : i + 900],
                params=params if i == 0 else [],
                tags=[RunTag("leukobench.leaky", str(cell.split.leaky))] if i == 0 else [],
            )
        self.client.set_terminated(run.info.run_id, "FINISHED")

    def _finish(self, record: RunRecord, path: Path) -> None:
        from mlflow.entities import Metric

        assert self.parent is not None
        now = int(time.time() * 1000)
        timings = [
            Metric(f"time.{k}", float(v), now, 0)
            for k, v in record.timings.items()
            if _finite(v) is not None
        ]
        if timings:
            self.client.log_batch(self.parent, metrics=timings)
        self.client.log_artifact(self.parent, str(path))
        with tempfile.TemporaryDirectory(prefix="leukobench-mlflow-") as tmp:
            for artifact in _report_artifacts(record, Path(tmp)):
                sub = "figures" if artifact.suffix != ".md" else None
                self.client.log_artifact(self.parent, str(artifact), sub)
        status = "FINISHED" if record.status == "complete" else "FAILED"
        self.client.set_terminated(self.parent, status)


def _report_artifacts(record: RunRecord, folder: Path) -> list[Path]:
    """The Markdown report and the figures of ``record``, written into ``folder``."""
    from bench.figures import write_figures
    from bench.render import render_text
    from bench.report import table1

    report = folder / f"{record.run_id}-report.md"
    report.write_text(render_text(table1(record), "md"), encoding="utf-8")
    figures = write_figures(record, folder / "figures")
    return [report, *figures]


def _check_reachable(uri: str | None) -> None:
    """Fail fast (seconds, not MLflow's minutes of retries) when an HTTP server is down."""
    if not uri or not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).close()
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(f"MLflow server {uri} is not reachable ({exc})") from None


class _Unreachable(Tracker):
    """Stands in for a tracker whose server could not be reached when the run started."""

    def __init__(self, target: str, reason: str) -> None:
        self.target, self.reason = target, reason

    def record_written(self, record: RunRecord, path: Path, *, final: bool) -> None:
        raise ConnectionError(self.reason)


def make_tracker(uri: str | None = None, experiment: str | None = None) -> Tracker:
    """The MLflow tracker; an unreachable server gives a tracker that warns once."""
    try:
        return MlflowTracker(uri=uri, experiment=experiment)
    except UserError:
        raise  # the package is missing: exit 2 before any work
    except Exception as exc:  # bad URI, server down: warn once when the run writes its record
        return _Unreachable(uri or "?", " ".join(str(exc).split())[:300])


@hookimpl
def leukobench_trackers() -> TrackerSpec:
    return TrackerSpec(
        "mlflow",
        make_tracker,
        "MLflow: one run per suite run, a nested run per cell (extra [mlflow])",
    )
