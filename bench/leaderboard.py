"""Leaderboard over a directory of result records.

One row per (dataset, backbone, method, options, split): the best run by the chosen
metric (or the latest run with ``latest=True``). Within a run, seeds are
aggregated as in Table 1. Failed cells are skipped; unreadable files produce a
warning, not a crash.

- Datasets are told apart by what was evaluated (fingerprint, images used, mask:
  :func:`bench.record_identity.dataset_identity`), never by name alone; rows show
  ``name (fp 5d8cad23, 3216 images)``.
- Options a suite set (classifier, backbone, fine-tuning settings, augmentation)
  are part of the row key and shown; ``-`` means the defaults ran.
- Rows of LEAKY splits are never ranked with leakage-safe rows: left out unless
  ``include_leaky``, then in their own table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.record_identity import cell_options, dataset_identity, dataset_label, options_text
from bench.record_stats import cell_unit_counts
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
from bench.units import PLURAL


@dataclass
class Entry:
    dataset: str  # "name (fp 5d8cad23, 3216 images)"
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
    dataset_name: str = "?"
    dataset_key: str = "?"
    options: str = "-"
    n_units: int = 0
    unit: str = "sample"

    @property
    def key(self) -> tuple[str, ...]:
        return (
            self.dataset_key,
            self.backbone,
            self.protocol,
            self.method,
            self.options,
            self.split_text,
        )

    @property
    def units_text(self) -> str:
        return f"{self.n_units} {PLURAL.get(self.unit, self.unit)}"

    def matches(self, dataset: str) -> bool:
        """``--dataset``: the name, the ``name (fp ...)`` label, or a fingerprint prefix."""
        fp = self.dataset.rsplit("(fp ", 1)[-1].split(",")[0].rstrip(")")
        return dataset in (self.dataset_name, self.dataset) or (
            len(dataset) >= 4 and fp.startswith(dataset[:8])
        )


def collect(results_dir: Path) -> tuple[list[tuple[Path, RunRecord]], list[str]]:
    """Readable records under ``results_dir`` (recursively) and a warning per unreadable file.

    Each file is read with :func:`bench.records.read_run_record`, which checks every
    field and the stored metrics against the stored predictions: a file that is not a
    result record, has a malformed field (a cell whose ``metrics`` is not a table, a
    label outside the classes, ``suite.config`` a string, JSON nested too deeply) or
    stores metrics its predictions do not give is skipped with one warning naming the
    file and the field.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        what = (
            "is a file, not a results folder" if results_dir.is_file() else "no such results folder"
        )
        raise UserError(f"{results_dir}: {what} (give the folder that holds the result records)")
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
            n, n_units, unit = cell_unit_counts(m.cells[0], ds)
            out.append(
                Entry(
                    dataset=dataset_label(ds),
                    backbone=m.backbone,
                    method=m.method,
                    protocol=m.protocol,
                    split_kind=m.split.kind,
                    split_text=m.split_text,
                    estimate=est,
                    n=n,
                    leaky=m.leaky,
                    pretrained=m.pretrained,
                    date=date,
                    run_id=record.run_id,
                    dataset_name=str(ds.get("name", "?")),
                    dataset_key=dataset_identity(ds),
                    options=options_text(cell_options(record, m.cells[0])),
                    n_units=n_units,
                    unit=unit,
                )
            )
    return out


def select(
    all_entries: list[Entry], latest: bool = False, dataset: str | None = None
) -> list[Entry]:
    """Best (or latest) entry per key, sorted by dataset then metric (descending)."""
    chosen: dict[tuple, Entry] = {}
    for e in all_entries:
        if dataset and not e.matches(dataset):
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


def leaderboard_table(
    rows: list[Entry], metric: str = "accuracy", latest: bool = False, leaky: bool = False
) -> Table:
    """One ranked table; ``leaky=True`` for the LEAKY section (its own ranking)."""
    name = METRIC_NAMES[metric]
    percent = metric not in ("mcc", "roc_auc")
    table_rows, data, styles = [], [], []
    for e in rows:
        table_rows.append(
            [
                e.dataset,
                e.backbone,
                e.method + (" [LEAKY]" if e.leaky else ""),
                e.options,
                e.split_text,
                e.estimate.fmt(percent=percent),
                str(e.n),
                e.units_text,
                "yes" if e.pretrained else "NO",
                e.date[:10],
                e.run_id,
            ]
        )
        data.append(
            {
                "dataset": e.dataset_name,
                "dataset_label": e.dataset,
                "dataset_key": e.dataset_key,
                "backbone": e.backbone,
                "method": e.method,
                "protocol": e.protocol,
                "options": e.options,
                "split": e.split_text,
                "split_kind": e.split_kind,
                metric: e.estimate.as_dict(),
                "n": e.n,
                "n_units": e.n_units,
                "unit": e.unit,
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
    caption = (
        f"{'Latest' if latest else 'Best'} run per (dataset, backbone, method, options, split); "
        f"{name.lower()} pooled over folds (mean over seeds when several) with its 95% CI over "
        "independent units; n = test predictions; Units = the independent units among them "
        "(source images or patients); Options = set by the suite ('-': the defaults); "
        "Dataset = name (fp: first 8 hex digits of its fingerprint, images used)."
    )
    if leaky:
        caption = (
            "LEAKY splits, ranked only among themselves: augmented copies of one image on both "
            "sides of the split inflate these numbers; never compare them with the "
            "leakage-safe table. " + caption
        )
    return Table(
        key="leaderboard-leaky" if leaky else "leaderboard",
        title=f"Leaderboard - {name}" + (" - LEAKY splits (not comparable)" if leaky else ""),
        headers=[
            "Dataset",
            "Backbone",
            "Method",
            "Options",
            "Split",
            f"{name}{unit} [95% CI]",
            "n",
            "Units",
            "Pretrained",
            "Date",
            "Run",
        ],
        rows=table_rows,
        data=data,
        caption=caption,
        footnotes=notes,
        styles=styles,
    )


def build(
    results_dir: Path,
    metric: str = "accuracy",
    dataset: str | None = None,
    latest: bool = False,
    include_synthetic: bool = False,
    include_leaky: bool = False,
) -> tuple[list[Table], list[str]]:
    """The leaderboard tables for ``results_dir`` and the warnings met on the way.

    The first table ranks leakage-safe rows; with ``include_leaky`` a second one ranks
    the LEAKY rows among themselves. Without it, leaky rows are left out (a footnote
    counts them).
    """
    if metric not in METRIC_NAMES:
        raise UserError(f"unknown metric {metric!r}; choose from {', '.join(METRIC_NAMES)}")
    records, warnings = collect(results_dir)
    found = entries((r for _, r in records), metric, include_synthetic=include_synthetic)
    rows = select(found, latest=latest, dataset=dataset)
    safe = [e for e in rows if not e.leaky]
    leaky = [e for e in rows if e.leaky]
    tables = [leaderboard_table(safe, metric, latest)]
    if include_leaky and leaky:
        tables.append(leaderboard_table(leaky, metric, latest, leaky=True))
    elif leaky:
        tables[0].footnotes.append(
            f"{len(leaky)} row(s) of LEAKY splits left out: they are never ranked with "
            "leakage-safe rows (--include-leaky lists them in their own table)."
        )
    return tables, warnings


def write_markdown(tables: Table | list[Table], path: Path) -> Path:
    """Atomically write the leaderboard as Markdown (generated-file banner on top)."""
    tables = [tables] if isinstance(tables, Table) else list(tables)
    banner = "<!-- generated by `leukobench leaderboard`; do not edit by hand -->\n\n"
    return atomic_write_text(Path(path), banner + render_text(tables, "md"))
