"""Compare two result records cell by cell: the regression gate behind ``leukobench compare``.

A shared cell *regresses* when, on the pooled metric,

- ``baseline - candidate > tolerance`` (absolute drop; status ``DROP``), or
- the candidate's 95% CI upper bound lies below the baseline's value
  (status ``CI-DROP``; off with ``use_ci=False``), or
- it completed in the baseline but failed in the candidate (status ``FAILED``).

Cells are matched by cell id, then by (protocol, backbone, classifier, seed, split).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.errors import UserError
from bench.records import CellRecord, RunRecord
from bench.render import Table
from bench.report import METRIC_NAMES, Estimate, as_run_record, cell_estimate, method_label

REGRESSIONS = ("DROP", "CI-DROP", "FAILED")


@dataclass
class CellDiff:
    key: str
    label: str
    baseline: Estimate | None
    candidate: Estimate | None
    status: (
        str  # ok | better | DROP | CI-DROP | FAILED | only-baseline | only-candidate | failed-both
    )
    leaky: bool = False

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.candidate is None:
            return None
        if self.baseline.mean is None or self.candidate.mean is None:
            return None
        return self.candidate.mean - self.baseline.mean

    @property
    def regressed(self) -> bool:
        return self.status in REGRESSIONS


@dataclass
class Comparison:
    metric: str
    tolerance: float
    baseline_id: str
    candidate_id: str
    diffs: list[CellDiff] = field(default_factory=list)

    @property
    def regressions(self) -> list[CellDiff]:
        return [d for d in self.diffs if d.regressed]

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0


def _key(cell: CellRecord) -> tuple:
    split = cell.split
    return (
        cell.protocol,
        cell.backbone,
        cell.classifier,
        cell.seed,
        split.kind,
        split.folds,
        split.holdout,
    )


def _label(cell: CellRecord) -> str:
    """``backbone + method, split, seed s`` (the method name from the cell's protocol)."""
    return f"{cell.backbone} + {method_label(cell)}, {cell.split.label}, seed {cell.seed}"


def match_cells(
    baseline: RunRecord | Mapping[str, Any], candidate: RunRecord | Mapping[str, Any]
) -> tuple[list[tuple[CellRecord, CellRecord]], list[CellRecord], list[CellRecord]]:
    """(pairs, only in baseline, only in candidate): by id first, then by key tuple."""
    base = list(as_run_record(baseline).cells)
    cand = list(as_run_record(candidate).cells)
    by_id = {c.id: c for c in cand if c.id}
    pairs, used = [], set()
    rest = []
    for b in base:
        c = by_id.get(b.id)
        if c is not None and id(c) not in used:
            pairs.append((b, c))
            used.add(id(c))
        else:
            rest.append(b)
    by_key = {}
    for c in cand:
        if id(c) not in used:
            by_key.setdefault(_key(c), c)
    only_base = []
    for b in rest:
        c = by_key.pop(_key(b), None)
        if c is None:
            only_base.append(b)
        else:
            pairs.append((b, c))
            used.add(id(c))
    only_cand = [c for c in cand if id(c) not in used]
    return pairs, only_base, only_cand


def compare_records(
    baseline: RunRecord | Mapping[str, Any],
    candidate: RunRecord | Mapping[str, Any],
    metric: str = "accuracy",
    tolerance: float = 0.01,
    use_ci: bool = True,
) -> Comparison:
    """Per-cell differences of ``metric`` (pooled) between two records."""
    if metric not in METRIC_NAMES:
        raise UserError(f"unknown metric {metric!r}; choose from {', '.join(METRIC_NAMES)}")
    if tolerance < 0:
        raise UserError(f"--tolerance must be >= 0 (got {tolerance})")
    baseline, candidate = as_run_record(baseline), as_run_record(candidate)
    out = Comparison(metric, tolerance, baseline.run_id, candidate.run_id)
    pairs, only_base, only_cand = match_cells(baseline, candidate)
    for b, c in pairs:
        key = str(b.id or _key(b))
        leaky = b.leaky or c.leaky
        if not b.complete:
            status = "failed-both" if not c.complete else "ok"
            eb = None
            ec = cell_estimate(c, metric) if c.complete else None
            out.diffs.append(CellDiff(key, _label(b), eb, ec, status, leaky))
            continue
        eb = cell_estimate(b, metric)
        if not c.complete:
            out.diffs.append(CellDiff(key, _label(b), eb, None, "FAILED", leaky))
            continue
        ec = cell_estimate(c, metric)
        out.diffs.append(
            CellDiff(key, _label(b), eb, ec, _status(eb, ec, tolerance, use_ci), leaky)
        )
    for b in only_base:
        est = cell_estimate(b, metric) if b.complete else None
        out.diffs.append(CellDiff(str(b.id), _label(b), est, None, "only-baseline", b.leaky))
    for c in only_cand:
        est = cell_estimate(c, metric) if c.complete else None
        out.diffs.append(CellDiff(str(c.id), _label(c), None, est, "only-candidate", c.leaky))
    return out


def _status(base: Estimate, cand: Estimate, tolerance: float, use_ci: bool) -> str:
    if base.mean is None or cand.mean is None:
        return "ok"
    drop = base.mean - cand.mean
    if drop > tolerance + 1e-12:
        return "DROP"
    # 1e-9: a Wilson bound of 100% is 0.9999999999999999 in floating point
    ci_high = cand.high if cand.high is not None and not math.isnan(cand.high) else None
    if use_ci and ci_high is not None and ci_high < base.mean - 1e-9:
        return "CI-DROP"
    return "better" if drop < -1e-12 else "ok"


def comparison_table(cmp: Comparison) -> Table:
    """The differences as a report table (regressions styled red)."""
    name = METRIC_NAMES[cmp.metric]
    rows, data, styles = [], [], []
    for d in cmp.diffs:
        delta = d.delta
        rows.append(
            [
                d.label + (" [LEAKY]" if d.leaky else ""),
                d.baseline.fmt() if d.baseline else "-",
                d.candidate.fmt() if d.candidate else "-",
                "-" if delta is None else f"{delta * 100:+.2f}",
                d.status,
            ]
        )
        data.append(
            {
                "cell": d.key,
                "label": d.label,
                "baseline": d.baseline.as_dict() if d.baseline else None,
                "candidate": d.candidate.as_dict() if d.candidate else None,
                "delta": delta,
                "status": d.status,
                "regressed": d.regressed,
                "leaky": d.leaky,
            }
        )
        styles.append("bold red" if d.regressed else ("green" if d.status == "better" else None))
    verdict = f"{len(cmp.regressions)} regression(s)" if cmp.regressions else "no regression"
    return Table(
        key="compare",
        title=f"{name}: {cmp.candidate_id} vs baseline {cmp.baseline_id}",
        headers=["Cell", f"Baseline {name} (%)", f"Candidate {name} (%)", "Delta (pp)", "Status"],
        rows=rows,
        data=data,
        caption=(
            f"{verdict}; tolerance {cmp.tolerance * 100:g} pp absolute on the pooled {cmp.metric}. "
            "DROP: fell by more than the tolerance; CI-DROP: candidate's 95% CI upper bound "
            "below the baseline value; FAILED: completed in the baseline, failed in the candidate."
        ),
        styles=styles,
    )
