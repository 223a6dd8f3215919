"""The learning-curve figure: score against training units (log x) with 95% CI bands."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from bench.protocols.base import Protocol
    from bench.records import CellRecord, RunRecord


def curve_figure(
    record: RunRecord, cells: list[CellRecord], protocol: Protocol, out_dir: Path
) -> Path:
    """Write ``<run id>-learning-curve.png`` under ``out_dir`` and return its path."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from bench.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    metric = "accuracy"
    ticks: set[float] = set()
    for cell in cells:
        s = cell.sections.get("learning_curve") or {}
        metric = s.get("metric", metric)
        pts = s.get("points") or []
        if not pts:
            continue
        n = np.array([p["n_units"] for p in pts], dtype=float)
        ticks.update(np.round(n).tolist())
        y = np.array([np.nan if p["score"] is None else p["score"] for p in pts], dtype=float) * 100
        ci = (
            np.array(
                [[np.nan, np.nan] if p.get("ci") is None else p["ci"] for p in pts], dtype=float
            )
            * 100
        )
        label = protocol.row_label(cell).split(" (learning curve")[0]
        (line,) = ax.plot(n, y, marker="o", label=label)
        ax.fill_between(n, ci[:, 0], ci[:, 1], alpha=0.18, color=line.get_color(), linewidth=0)
    ax.set_xscale("log")
    if ticks:
        from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

        ax.xaxis.set_major_locator(FixedLocator(sorted(ticks)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training units (groups) per fold, log scale")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"Learning curve - {record.dataset.get('name', '?')}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    out_dir = Path(out_dir)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", record.run_id).strip("-")
    path = out_dir / f"{slug}-learning-curve.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path
