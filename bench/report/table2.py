"""Table 2: the literature's accuracies beside each run's best accuracy per protocol and split."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.records import RunRecord
from bench.render import Table
from bench.report.estimates import LEAKY_NOTE, Estimate
from bench.report.methods import Method, as_run_record, methods
from bench.report.table1 import aug_text, style


def load_literature(path: Path | None = None) -> list[dict[str, Any]]:
    """Literature entries (``[[work]]`` tables) from ``bench/literature.toml`` or ``path``."""
    try:
        if path is None:
            text = resources.files("bench").joinpath("literature.toml").read_text("utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        works = tomllib.loads(text).get("work", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(
            f"{path or 'bench/literature.toml'}: cannot read literature ({exc})"
        ) from None
    required = ("authors", "year", "n_images", "accuracy", "split", "method", "dataset")
    for i, work in enumerate(works):
        missing = [k for k in required if k not in work]
        if missing:
            raise UserError(f"literature work #{i + 1}: missing key(s) {missing}")
    return works


def table2(
    records: Sequence[RunRecord | Mapping[str, Any]], literature: list[dict[str, Any]] | None = None
) -> Table:
    """The literature's accuracies beside each run's best accuracy per protocol and split."""
    works = load_literature() if literature is None else literature
    headers = [
        "Work",
        "Year",
        "Dataset",
        "Images",
        "Split protocol",
        "Method",
        "Accuracy (%)",
        "Comparability",
    ]
    rows, data, styles = [], [], []
    for w in works:
        rows.append(
            [
                str(w["authors"]),
                str(w["year"]),
                str(w["dataset"]),
                str(w["n_images"]),
                str(w["split"]),
                str(w["method"]),
                f"{float(w['accuracy']) * 100:.2f}".rstrip("0").rstrip("."),
                str(w.get("note", "")),
            ]
        )
        data.append({"source": "literature", **w})
        styles.append("bold red" if w.get("leaky") else None)
    leaky_any = any(w.get("leaky") for w in works)
    for record in (as_run_record(r) for r in records):
        ds = record.dataset
        best: dict[tuple[str, str], tuple[Method, Estimate]] = {}
        for m in methods(record):
            est = m.estimate("accuracy")
            if est.mean is None:
                continue
            key = (m.protocol, m.split_text)
            if key not in best or est.mean > (best[key][1].mean or -1):
                best[key] = (m, est)
        for (_protocol, split), (m, est) in best.items():
            n_eval = m.n_evaluated()
            images = str(ds.get("n_images", "?"))
            if n_eval and n_eval != ds.get("n_images"):
                images += f" ({n_eval} evaluated)"
            aug = aug_text(m.cells[0].augmentation)
            note = (
                "LEAKY split: inflated, comparable only with other leaky protocols"
                if m.leaky
                else "leakage-safe: no source image on both sides of a split"
            )
            rows.append(
                [
                    f"This run ({record.run_id})",
                    str(record.started or "")[:4],
                    str(ds.get("name", "?")),
                    images,
                    split + (f", augmentation {aug}" if aug != "none" else ""),
                    m.name,
                    est.fmt(),
                    note,
                ]
            )
            data.append(
                {
                    "source": "run",
                    "run_id": record.run_id,
                    "dataset": ds.get("name"),
                    "n_images": ds.get("n_images"),
                    "n_evaluated": n_eval,
                    "split": m.split.to_json(),
                    "protocol": m.protocol,
                    "method": m.name,
                    "leaky": m.leaky,
                    "accuracy": est.as_dict(),
                }
            )
            styles.append(style(m))
            leaky_any = leaky_any or m.leaky
    return Table(
        key="table2",
        title="Table 2. Accuracy beside the literature",
        headers=headers,
        rows=rows,
        data=data,
        caption=(
            "Literature values as published (bench/literature.toml); this run's best accuracy "
            "per protocol and split. Only rows with the same dataset and split protocol are comparable."
        ),
        footnotes=[LEAKY_NOTE] if leaky_any else [],
        styles=styles,
    )
