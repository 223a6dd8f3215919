"""``leukobench leaderboard``: best (or latest) run per dataset/backbone/method/options/split.

LEAKY rows are left out unless ``--include-leaky`` (then ranked in their own table).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cli.common import make_console, output_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="best run per (dataset, backbone, method, options, split) from a results directory",
        description=(
            "One row per dataset (told apart by fingerprint, not name), backbone, method, "
            "suite-set options and split. LEAKY splits are never ranked with leakage-safe "
            "ones: left out unless --include-leaky, which lists them in their own table."
        ),
    )
    p.add_argument(
        "results_dir",
        nargs="?",
        type=Path,
        default=Path("results"),
        metavar="RESULTS_DIR",
        help="directory of result records, searched recursively (default results/)",
    )
    p.add_argument(
        "--metric",
        default="accuracy",
        help="ranking metric (default accuracy): precision, recall, accuracy, specificity, f1, mcc, roc_auc, balanced_accuracy",
    )
    p.add_argument(
        "--dataset", metavar="NAME", help="only this dataset (name, or fingerprint prefix)"
    )
    p.add_argument("--latest", action="store_true", help="latest run per row instead of the best")
    p.add_argument(
        "--include-synthetic",
        action="store_true",
        help="also list runs on synthetic data (smoke tests, never claims)",
    )
    p.add_argument(
        "--include-leaky",
        action="store_true",
        help="also list LEAKY splits, in their own table (never ranked with the others)",
    )
    p.add_argument(
        "--format",
        choices=("rich", "md", "html"),
        default=None,
        help="rich (terminal, the default), md (the default with --out) or html "
        "(one standalone page)",
    )
    p.add_argument(
        "--out", type=output_file, metavar="LEADERBOARD.md", help="write the leaderboard here"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.leaderboard import build, write_markdown
    from bench.render import render_rich

    tables, warnings = build(
        args.results_dir,
        args.metric,
        args.dataset,
        args.latest,
        args.include_synthetic,
        args.include_leaky,
    )
    for warning in warnings:
        print(f"leukobench: warning: {warning}", file=sys.stderr)
    n_rows = sum(len(t.rows) for t in tables)
    if not n_rows and args.dataset:
        from bench.errors import UserError

        everything, _ = build(
            args.results_dir, args.metric, None, args.latest, args.include_synthetic, True
        )
        names = sorted({str(row[0]) for t in everything for row in t.rows})
        if names:
            raise UserError(
                f"--dataset {args.dataset!r}: no dataset of that name or fingerprint prefix under "
                f"{args.results_dir}; its datasets: {'; '.join(names)}"
            )
    if not n_rows:
        print(
            f"leukobench: no complete cells in result records under {args.results_dir}",
            file=sys.stderr,
        )
    fmt = args.format or ("md" if args.out else "rich")
    if fmt == "html":
        from bench.report.html_page import tables_page
        from bench.results import atomic_write_text

        page = tables_page(
            "LeukoBench leaderboard",
            tables,
            intro=f"Best run per row from {args.results_dir}; intervals are 95%.",
        )
        if args.out:
            atomic_write_text(args.out, page)
            print(f"wrote {args.out} ({n_rows} row(s))", file=sys.stderr)
        else:
            sys.stdout.write(page)
    elif fmt == "md" and args.out:
        write_markdown(tables, args.out)
        print(f"wrote {args.out} ({n_rows} row(s))", file=sys.stderr)
    elif fmt == "md":
        from bench.render import render_text

        sys.stdout.write(render_text(tables, "md"))
    else:
        if args.out:
            write_markdown(tables, args.out)
        render_rich(tables, make_console())
    return 0
