"""Figure style shared by every chart: a colour-blind-safe palette, formats, atomic saving."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from bench.errors import UserError

#: Okabe & Ito (2008): distinguishable with every common colour-vision deficiency.
PALETTE = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermilion
    "#F0E442",  # yellow
    "#000000",  # black
)
LEAKY_COLOUR = "#D55E00"  # vermilion: LEAKY labels and markers
FORMATS = ("png", "svg", "pdf")
DEFAULT_DPI = 300


def plt() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend, with the house style."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as pyplot

    pyplot.rcParams.update(
        {
            "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.size": 9,
            "svg.fonttype": "none",  # text stays text in SVG (searchable, editable)
            "pdf.fonttype": 42,  # TrueType in PDF (journals ask for it)
        }
    )
    return pyplot


def slug(text: str) -> str:
    """A readable file-name part: ``'alexnet + SVM (cubic)'`` -> ``'alexnet-svm-cubic'``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:80] or "figure"


def check_format(fmt: str, dpi: int) -> None:
    """UserError (exit 2) for an unknown format or an absurd resolution."""
    if fmt not in FORMATS:
        raise UserError(f"--figure-format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if not 30 <= int(dpi) <= 1200:
        raise UserError(f"--dpi {dpi}: choose a resolution between 30 and 1200")


def save(fig: Any, path: Path, dpi: int = DEFAULT_DPI) -> Path:
    """Write ``fig`` to ``path`` (format from its suffix) atomically; close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata=_metadata(path.suffix))
        tmp.replace(path)
    finally:
        plt().close(fig)
        tmp.unlink(missing_ok=True)
    return path


def _metadata(suffix: str) -> dict[str, Any] | None:
    # Reproducible files: no creation dates in the output.
    if suffix == ".svg":
        return {"Date": None}
    if suffix == ".pdf":
        return {"CreationDate": None}
    if suffix == ".png":
        return {"Software": None}
    return None
