"""``leukobench report``: Table 1 / Table 2 (and figures, paired tests) from result records."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import UserError
from bench.render import FORMATS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="Table 1 / Table 2 from result records",
        description=(
            "Table 1 (per-method precision, recall, accuracy, specificity with 95%% CI, "
            "grouped by model) and Table 2 (accuracy beside the literature)."
        ),
    )
    p.add_argument("results", nargs="+", type=Path, metavar="RESULT.json", help="result record(s)")
    p.add_argument(
        "--table", choices=("1", "2", "all"), default="all", help="which table (default all)"
    )
    p.add_argument("--format", choices=FORMATS, default="rich", help="output format (default rich)")
    p.add_argument("--out", type=Path, help="write to this file instead of the terminal")
    p.add_argument("--figures", type=Path, metavar="DIR", help="also write PNG figures here")
    p.add_argument(
        "--extra-metrics",
        action="store_true",
        help="add F1, MCC, ROC AUC and balanced accuracy columns to Table 1",
    )
    p.add_argument(
        "--compare-methods",
        action="store_true",
        help="add pairwise paired tests (McNemar, corrected t-test) between methods",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.records import read_run_record
    from bench.report import EXTRA_METRICS, compare_methods, table1, table2
    from bench.results import atomic_write_text

    records = [read_run_record(path) for path in args.results]  # malformed: exit 2 naming it
    tables = []
    if args.table in ("1", "all"):
        extra = EXTRA_METRICS if args.extra_metrics else ()
        for record in records:
            tables += table1(record, extra=extra)
    if args.compare_methods:
        tables += [compare_methods(record) for record in records]
    if args.table in ("2", "all"):
        tables.append(table2(records))
    if args.out:
        from bench.render import render_text

        if args.out.is_dir():
            raise UserError(f"--out {args.out}: is a directory; give a file name")
        atomic_write_text(args.out, render_text(tables, args.format))
        print(f"wrote {args.out}", file=sys.stderr)
    elif args.format == "rich":
        from bench.render import render_rich

        render_rich(tables)
    else:
        from bench.render import render_text

        sys.stdout.write(render_text(tables, args.format))
    if args.figures:
        from bench.figures import write_figures

        paths = [p for record in records for p in write_figures(record, args.figures)]
        print(f"wrote {len(paths)} figure(s) to {args.figures}", file=sys.stderr)
    return 0
