"""``leukobench compare``: per-cell differences between two runs; exit 1 on a regression."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.render import FORMATS
from bench.report import METRIC_NAMES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two result records; exit 1 when a shared cell regresses",
        description=(
            "Exit 1 when a shared cell's pooled metric drops by more than --tolerance, when "
            "the candidate's 95%% CI upper bound is below the baseline value (unless "
            "--ignore-ci), or when a cell that completed in the baseline failed; else exit 0."
        ),
    )
    p.add_argument("baseline", type=Path, metavar="BASELINE.json")
    p.add_argument("candidate", type=Path, metavar="CANDIDATE.json")
    p.add_argument("--metric", choices=tuple(METRIC_NAMES), default="accuracy")
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="allowed absolute drop as a fraction (default 0.01 = 1 percentage point)",
    )
    p.add_argument("--ignore-ci", action="store_true", help="do not apply the CI rule")
    p.add_argument("--format", choices=FORMATS, default="rich", help="output format (default rich)")
    p.add_argument("--out", type=Path, help="also write the table to this file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.compare import compare_records, comparison_table
    from bench.records import read_run_record
    from bench.render import render_rich, render_text
    from bench.results import atomic_write_text

    cmp = compare_records(
        read_run_record(args.baseline),
        read_run_record(args.candidate),
        metric=args.metric,
        tolerance=args.tolerance,
        use_ci=not args.ignore_ci,
    )
    table = comparison_table(cmp)
    if args.format == "rich":
        render_rich([table])
    else:
        sys.stdout.write(render_text([table], args.format))
    if args.out:
        fmt = "md" if args.format == "rich" else args.format
        atomic_write_text(args.out, render_text([table], fmt))
    if cmp.regressions:
        names = ", ".join(f"{d.key} ({d.status})" for d in cmp.regressions)
        print(f"leukobench: REGRESSION in {len(cmp.regressions)} cell(s): {names}", file=sys.stderr)
    return cmp.exit_code
