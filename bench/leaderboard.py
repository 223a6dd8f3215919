"""Leaderboard over a directory of result records.

One row per (dataset, backbone, method, split kind): the best run by the chosen
metric (or the latest run with ``latest=True``). Within a run, seeds are
aggregated as in Table 1. Failed cells are skipped; unreadable files produce a
warning, not a crash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.records import RecordError, RunRecord, read_run_record
from bench.render import Table, render_text
from bench.report import (
    LEAKY_NOTE,
    METRIC_NAMES,
    NOT_PRETRAINED_NOTE,
    Estimate,
    as_run_record,
    methods,
)
from bench.results import atomic_write_text


@dataclass
class Entry:
    dataset: str
    backbone: str
    method: str  # classifier label, or "fine-tuned"
    protocol: str
    split_kind: str
    split_text: str
    estimate: Estimate
    n: int
    leaky: bool
    pretrained: bool
    date: str
    run_id: str

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.dataset, self.backbone, self.protocol, self.method, self.split_text)


def collect(results_dir: Path) -> tuple[list[tuple[Path, RunRecord]], list[str]]:
    """Readable records under ``results_dir`` (recursively) and a warning per unreadable file.

    A file that is not a result record, or a record with a malformed field (e.g. a
    cell whose ``metrics`` is not a table), is skipped with a warning naming the
    file and the field.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"{results_dir}: no such results directory")
    records, warnings = [], []
    for path in sorted(results_dir.rglob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            records.append((path, read_run_record(path)))
        except RecordError as exc:
            warnings.append(f"skipped {exc}")
    return records, warnings


def entries(
    records: Iterable[RunRecord | Mapping[str, Any]],
    metric: str = "accuracy",
    include_synthetic: bool = False,
) -> list[Entry]:
    """Every method of every record as a leaderboard entry (complete cells only).

    Records on synthetic data are smoke tests, never claims: left out unless asked for.
    """
    out = []
    for record in (as_run_record(r) for r in records):
        ds = record.dataset
        if ds.get("synthetic") and not include_synthetic:
            continue
        date = str(record.finished or record.started or "")
        for m in methods(record):
            est = m.estimate(metric)
            if est.mean is None:
                continue
            out.append(
                Entry(
                    dataset=str(ds.get("name", "?")),
                    backbone=m.backbone,
                    method=m.method,
                    protocol=m.protocol,
                    split_kind=m.split.kind,
                    split_text=m.split_text,
                    estimate=est,
                    n=m.n_evaluated(),
                    leaky=m.leaky,
                    pretrained=m.pretrained,
                    date=date,
                    run_id=record.run_id,
                )
            )
    return out


def select(
    all_entries: list[Entry], latest: bool = False, dataset: str | None = None
) -> list[Entry]:
    """Best (or latest) entry per key, sorted by dataset then metric (descending)."""
    chosen: dict[tuple, Entry] = {}
    for e in all_entries:
        if dataset and e.dataset != dataset:
            continue
        old = chosen.get(e.key)
        if old is None:
            chosen[e.key] = e
        elif latest:
            if (e.date, e.run_id) > (old.date, old.run_id):
                chosen[e.key] = e
        elif (e.estimate.mean, e.date) > (old.estimate.mean, old.date):
            chosen[e.key] = e
    return sorted(chosen.values(), key=lambda e: (e.dataset, -(e.estimate.mean or 0.0), e.key))


def leaderboard_table(rows: list[Entry], metric: str = "accuracy", latest: bool = False) -> Table:
    name = METRIC_NAMES[metric]
    percent = metric not in ("mcc", "roc_auc")
    table_rows, data, styles = [], [], []
    for e in rows:
        table_rows.append(
            [
                e.dataset,
                e.backbone,
                e.method,
                e.split_text,
                e.estimate.fmt(percent=percent),
                str(e.n),
                "LEAKY" if e.leaky else "no",
                "yes" if e.pretrained else "NO",
                e.date[:10],
                e.run_id,
            ]
        )
        data.append(
            {
                "dataset": e.dataset,
                "backbone": e.backbone,
                "method": e.method,
                "protocol": e.protocol,
                "split": e.split_text,
                "split_kind": e.split_kind,
                metric: e.estimate.as_dict(),
                "n": e.n,
                "leaky": e.leaky,
                "pretrained": e.pretrained,
                "date": e.date,
                "run_id": e.run_id,
            }
        )
        styles.append("bold red" if e.leaky else ("yellow" if not e.pretrained else None))
    notes = []
    if any(e.leaky for e in rows):
        notes.append(LEAKY_NOTE)
    if any(not e.pretrained for e in rows):
        notes.append(NOT_PRETRAINED_NOTE)
    unit = " (%)" if percent else ""
    return Table(
        key="leaderboard",
        title=f"Leaderboard - {name}",
        headers=[
            "Dataset",
            "Backbone",
            "Method",
            "Split",
            f"{name}{unit} [95% CI]",
            "n",
            "Leaky",
            "Pretrained",
            "Date",
            "Run",
        ],
        rows=table_rows,
        data=data,
        caption=(
            f"{'Latest' if latest else 'Best'} run per (dataset, backbone, method, split); "
            f"{name.lower()} pooled over folds (mean over seeds when several); n = test predictions."
        ),
        footnotes=notes,
        styles=styles,
    )


def build(
    results_dir: Path,
    metric: str = "accuracy",
    dataset: str | None = None,
    latest: bool = False,
    include_synthetic: bool = False,
) -> tuple[Table, list[str]]:
    """The leaderboard table for ``results_dir`` and the warnings met on the way."""
    if metric not in METRIC_NAMES:
        raise UserError(f"unknown metric {metric!r}; choose from {', '.join(METRIC_NAMES)}")
    records, warnings = collect(results_dir)
    found = entries((r for _, r in records), metric, include_synthetic=include_synthetic)
    rows = select(found, latest=latest, dataset=dataset)
    return leaderboard_table(rows, metric, latest), warnings


def write_markdown(table: Table, path: Path) -> Path:
    """Atomically write the leaderboard as Markdown (generated-file banner on top)."""
    banner = "<!-- generated by `leukobench leaderboard`; do not edit by hand -->\n\n"
    return atomic_write_text(Path(path), banner + render_text([table], "md"))
