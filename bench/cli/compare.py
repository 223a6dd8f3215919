"""``leukobench compare``: per-cell differences between two runs; exit 1 on a regression.

Exit 0: comparable and nothing regressed; 1: a cell regressed, is missing or failed, or
the candidate is incomplete or empty; 2: bad input, or records that are not comparable
(other dataset, seeds, split kind or fold count) without ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cli.common import finite_float, make_console, output_file
from bench.render import FORMATS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two result records; exit 1 when a cell regresses or is missing",
        description=(
            "Exit 1 when a shared cell's pooled metric drops by more than --tolerance, when "
            "the candidate's 95% CI upper bound is below the baseline value (unless "
            "--ignore-ci), when a cell that completed in the baseline failed or is missing "
            "from the candidate, or when the candidate run is incomplete (unless "
            "--allow-missing) or has no completed cell; else exit 0. Exit 2 when the "
            "records differ in dataset fingerprint, seeds, split kind or fold count "
            "(unless --force)."
        ),
    )
    p.add_argument("baseline", type=Path, metavar="BASELINE.json")
    p.add_argument("candidate", type=Path, metavar="CANDIDATE.json")
    p.add_argument(
        "--metric",
        default="accuracy",
        help="metric (default accuracy): precision, recall, accuracy, specificity, f1, mcc, roc_auc, balanced_accuracy",
    )
    p.add_argument(
        "--tolerance",
        type=finite_float,
        default=0.01,
        help="allowed absolute drop as a fraction (default 0.01 = 1 percentage point)",
    )
    p.add_argument("--ignore-ci", action="store_true", help="do not apply the CI rule")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="cells missing from the candidate, and an incomplete candidate run, do not fail",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="compare records of different datasets, seeds, splits or folds (listed as notes)",
    )
    p.add_argument("--format", choices=FORMATS, default="rich", help="output format (default rich)")
    p.add_argument("--out", type=output_file, help="also write the table to this file")
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
        allow_missing=args.allow_missing,
        force=args.force,
    )
    table = comparison_table(cmp)
    if args.format == "rich":
        render_rich([table], make_console())
    else:
        sys.stdout.write(render_text([table], args.format))
    if args.out:
        fmt = "md" if args.format == "rich" else args.format
        atomic_write_text(args.out, render_text([table], fmt))
    for problem in cmp.problems:
        print(f"leukobench: GATE FAILED: {problem}", file=sys.stderr)
    if cmp.regressions:
        names = ", ".join(f"{d.key} ({d.status})" for d in cmp.regressions)
        print(f"leukobench: REGRESSION in {len(cmp.regressions)} cell(s): {names}", file=sys.stderr)
    for note in cmp.notes:
        print(f"leukobench: warning: {note}", file=sys.stderr)
    return cmp.exit_code
