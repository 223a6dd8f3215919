"""Paired comparisons of the methods of one record (``report --compare-methods``).

One implementation of the paired tests: :func:`bench.stats.compare_methods`
(McNemar on pooled predictions, Nadeau-Bengio corrected t-test on fold
accuracies). Pairs whose folds differ (another seed, another split) are not
comparable and are left out of the table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bench.errors import UserError
from bench.records import RunRecord
from bench.render import Table
from bench.report.methods import as_run_record, methods


def compare_methods(record: RunRecord | Mapping[str, Any]) -> Table:
    """Pairwise paired tests between cells evaluated on the same folds (same seed)."""
    from bench import stats

    record = as_run_record(record)
    ms = methods(record)
    cells = [(m.name, c) for m in ms for c in m.cells]
    rows, data = [], []
    for i, (name_a, a) in enumerate(cells):
        for name_b, b in cells[i + 1 :]:
            if a.seed != b.seed:
                continue
            try:
                out = stats.compare_methods(a.to_json(), b.to_json())
            except UserError:
                continue  # not the same folds: a paired test would be meaningless
            mc, tt = out["mcnemar"], out["corrected_ttest"]
            row = {
                "a": name_a,
                "b": name_b,
                "seed": a.seed,
                "accuracy_a": out["accuracy_a"],
                "accuracy_b": out["accuracy_b"],
                "mcnemar_stat": float(mc["statistic"]),
                "mcnemar_p": float(mc["p_value"]),
                "ttest_t": float(tt["t"]),
                "ttest_p": float(tt["p_value"]),
                "folds": int(tt["n_folds"]),
            }
            data.append(row)
            rows.append(
                [
                    row["a"],
                    row["b"],
                    str(row["seed"]),
                    f"{row['accuracy_a'] * 100:.1f}",
                    f"{row['accuracy_b'] * 100:.1f}",
                    f"{row['mcnemar_stat']:.2f}",
                    _p(row["mcnemar_p"]),
                    "-" if math.isnan(row["ttest_t"]) else f"{row['ttest_t']:.2f}",
                    _p(row["ttest_p"]),
                ]
            )
    return Table(
        key="compare-methods",
        title=f"Paired comparisons - {record.run_id}",
        headers=[
            "Method A",
            "Method B",
            "Seed",
            "Acc A (%)",
            "Acc B (%)",
            "McNemar",
            "p",
            "corr. t",
            "p",
        ],
        rows=rows,
        data=data,
        caption=(
            "Pairs evaluated on identical folds. McNemar: pooled predictions; corrected t: "
            "Nadeau-Bengio over fold accuracies (k-fold only). p-values are not adjusted "
            "for multiple comparisons."
        ),
    )


def _p(p: float) -> str:
    if p is None or math.isnan(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"
