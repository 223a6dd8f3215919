"""TensorBoard tracking: fine-tuning curves and per-fold metrics as TensorBoard scalars.

Install with ``pip install 'leukobench[tensorboard]'``. Turn it on with
``[run] track = ["tensorboard"]`` or ``--track tensorboard --tracking-uri DIR``
(default ``runs/``); each cell gets its own log folder
``DIR/<run id>/<cell id>`` (characters other than letters, digits and ``_.=-``
become ``_``) so TensorBoard shows one curve per cell. A URI that is not a
folder (``sqlite:///mlflow.db``, ``http://...``: MLflow's, when both trackers
run) leaves TensorBoard at ``runs/``; ``file:///path`` is the folder ``/path``.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.errors import UserError
from bench.hookspecs import hookimpl
from bench.records import RunRecord
from bench.specs import TrackerSpec
from bench.tracking import Tracker

DEFAULT_ROOT = "runs"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")  # two letters at least: not "C:"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or "cell"


def log_root(uri: str | None) -> Path:
    """TensorBoard's folder for ``uri``: a path, ``file://`` URI, or ``runs/`` for other URIs."""
    if not uri:
        return Path(DEFAULT_ROOT)
    match = _SCHEME.match(uri)
    if match is None:
        return Path(uri).expanduser()
    if match.group(1).lower() == "file":
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    return Path(DEFAULT_ROOT)  # sqlite:, http: ...: another tracker's store, not a folder


class TensorboardTracker(Tracker):
    """Writes each complete cell's curves once, into its own event-file folder."""

    def __init__(self, uri: str | None = None, experiment: str | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError(
                "tracking with tensorboard needs the tensorboard package: "
                "pip install 'leukobench[tensorboard]'"
            ) from None
        self.writer_type = SummaryWriter
        self.root = log_root(uri)
        if experiment:
            self.root = self.root / _safe(experiment)
        self.target = str(self.root)
        self.logged: set[str] = set()

    def record_written(self, record: RunRecord, path: Path, *, final: bool) -> None:
        from plugins.mlflow_tracking import cell_metrics

        for cell in record.cells:
            if not cell.complete or cell.id in self.logged:
                continue
            folder = self.root / _safe(record.run_id) / _safe(cell.id)
            writer = self.writer_type(log_dir=str(folder))
            try:
                for key, value, step in cell_metrics(cell):
                    writer.add_scalar(key, value, step)
                writer.add_text("cell", f"{cell.backbone} + {cell.label}, {cell.split.label}")
            finally:
                writer.close()
            self.logged.add(cell.id)


@hookimpl
def leukobench_trackers() -> TrackerSpec:
    return TrackerSpec(
        "tensorboard",
        TensorboardTracker,
        "TensorBoard event files: fine-tuning curves, per-fold metrics (extra [tensorboard])",
    )
