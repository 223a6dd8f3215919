"""The speed gate's verdicts: one screen, one row per benchmark, the noise stated.

Used by ``benchmarks/conftest.py`` (``pytest benchmarks --benchmark-compare ...``) and by
``scripts/speed_gate.py`` (two saved pytest-benchmark JSON files). A benchmark is
``SLOWER`` (the gate fails) when its change exceeds the threshold of a
``--benchmark-compare-fail`` check (e.g. ``mean:15%``) **and** the measured noise:
the larger interquartile range over median (IQR/median) of the two runs. A change
beyond the threshold but within the noise is ``noise?`` (reported, not failed), and
``faster`` likewise needs a gain beyond both;
with fewer than ``MIN_ROUNDS`` rounds on a side the noise is unknown and the
threshold alone decides (``SLOWER (n rounds)``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MIN_ROUNDS = 5
DEFAULT_CHECK = "mean:15%"
FAILING = ("SLOWER",)


@dataclass(frozen=True)
class Check:
    """One ``--benchmark-compare-fail`` rule: ``field:N%`` (relative) or ``field:X`` (seconds)."""

    field: str
    threshold: float
    relative: bool

    @classmethod
    def parse(cls, text: str) -> Check:
        match = re.fullmatch(r"\s*(min|max|mean|median|stddev|iqr):([0-9.]+)(%?)\s*", text)
        if not match:
            raise ValueError(f"bad check {text!r}: expected e.g. 'mean:15%' or 'median:0.002'")
        field, number, pct = match.groups()
        return cls(field, float(number), bool(pct))

    def text(self) -> str:
        return f"{self.field}:{self.threshold:g}{'%' if self.relative else 's'}"


@dataclass(frozen=True)
class Row:
    name: str
    baseline: float
    candidate: float
    change: float  # relative (fraction) for relative checks, else seconds
    noise: float  # max IQR/median of the two runs (fraction); nan when unknown
    rounds: tuple[int, int]
    verdict: str

    @property
    def failed(self) -> bool:
        return self.verdict.split(" ")[0] in FAILING


def _rel_iqr(stats: Mapping[str, Any]) -> float:
    median = float(stats.get("median") or 0.0)
    if int(stats.get("rounds") or 0) < MIN_ROUNDS or median <= 0:
        return math.nan
    return float(stats.get("iqr") or 0.0) / median


def judge(name: str, base: Mapping[str, Any], cand: Mapping[str, Any], check: Check) -> Row:
    """The verdict for one benchmark (``base`` / ``cand``: pytest-benchmark ``stats`` dicts)."""
    b, c = float(base[check.field]), float(cand[check.field])
    rounds = (int(base.get("rounds") or 0), int(cand.get("rounds") or 0))
    noise = max(_rel_iqr(base), _rel_iqr(cand))
    if check.relative:
        change = (c - b) / b if b else math.inf
        limit = check.threshold / 100
        beyond_noise = math.isnan(noise) or change > noise
    else:
        change = c - b
        limit = check.threshold
        beyond_noise = math.isnan(noise) or change > noise * float(base.get("median") or 0)
    if change > limit:
        if not beyond_noise:
            verdict = "noise?"
        elif math.isnan(noise):
            verdict = f"SLOWER ({min(rounds)} round{'s' if min(rounds) != 1 else ''})"
        else:
            verdict = "SLOWER"
    elif change < -limit and (math.isnan(noise) or -change > noise * (1 if check.relative else b)):
        verdict = "faster"
    else:
        verdict = "ok"
    return Row(name, b, c, change, noise, rounds, verdict)


def compare(
    baseline: Iterable[Mapping[str, Any]], candidate: Iterable[Mapping[str, Any]], check: Check
) -> tuple[list[Row], list[str], list[str]]:
    """(rows, names only in the baseline, names only in the candidate) of two benchmark lists.

    Items are pytest-benchmark JSON ``benchmarks`` entries (``fullname``, ``stats``).
    """
    base = {b["fullname"]: b["stats"] for b in baseline}
    cand = {b["fullname"]: b["stats"] for b in candidate}
    rows = [judge(name, base[name], cand[name], check) for name in base if name in cand]
    return rows, [n for n in base if n not in cand], [n for n in cand if n not in base]


def _seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.3f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.1f} us"


def _short(name: str, width: int = 46) -> str:
    name = name.split("::", 1)[-1] if "::" in name else name
    if len(name) <= width:
        return name
    head = width // 3
    return name[:head] + "..." + name[-(width - head - 3) :]


def render(
    rows: list[Row], check: Check, only_base: list[str] = (), only_cand: list[str] = ()
) -> str:
    """The summary as plain text (fits 100 columns)."""
    head = (
        "benchmark",
        f"baseline {check.field}",
        "candidate",
        "change",
        "noise",
        "rounds",
        "verdict",
    )
    lines = [(r.name, r) for r in rows]
    table = [head]
    for name, r in lines:
        change = f"{r.change * 100:+.1f}%" if check.relative else f"{r.change * 1e3:+.2f} ms"
        noise = "?" if math.isnan(r.noise) else f"{r.noise * 100:.1f}%"
        table.append(
            (
                _short(name),
                _seconds(r.baseline),
                _seconds(r.candidate),
                change,
                noise,
                f"{r.rounds[0]}/{r.rounds[1]}",
                r.verdict,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    out = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        )
        for row in table
    ]
    out.insert(1, "-" * len(out[0]))
    failed = [r for r in rows if r.failed]
    known = [r.noise for r in rows if not math.isnan(r.noise)]
    out.append("")
    typical = f"{sorted(known)[len(known) // 2] * 100:.1f}%" if known else "unknown"
    out.append(
        f"speed gate: {len(failed)} slower of {len(rows)} compared (check {check.text()}); "
        f"noise = larger IQR/median of the two runs (median {typical})."
    )
    out.append(
        "SLOWER: beyond the check and the noise (fails); noise?: beyond the check, within "
        f"the noise;\n'(n rounds)': fewer than {MIN_ROUNDS} rounds, noise unknown, the check decides."
    )
    if only_base:
        out.append(f"not run in the candidate: {', '.join(_short(n) for n in only_base)}")
    if only_cand:
        out.append(f"new (no baseline): {', '.join(_short(n) for n in only_cand)}")
    return "\n".join(out)
