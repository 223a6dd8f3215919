"""``leukobench leaderboard``: best (or latest) run per dataset/backbone/method/split."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cli.common import make_console, output_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="best run per (dataset, backbone, method, split) from a results directory",
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
    p.add_argument("--dataset", metavar="NAME", help="only this dataset")
    p.add_argument("--latest", action="store_true", help="latest run per row instead of the best")
    p.add_argument(
        "--include-synthetic",
        action="store_true",
        help="also list runs on synthetic data (smoke tests, never claims)",
    )
    p.add_argument("--out", type=output_file, metavar="LEADERBOARD.md", help="write Markdown here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.leaderboard import build, write_markdown
    from bench.render import render_rich

    table, warnings = build(
        args.results_dir, args.metric, args.dataset, args.latest, args.include_synthetic
    )
    for warning in warnings:
        print(f"leukobench: warning: {warning}", file=sys.stderr)
    if not table.rows:
        print(
            f"leukobench: no complete cells in result records under {args.results_dir}",
            file=sys.stderr,
        )
    if args.out:
        write_markdown(table, args.out)
        print(f"wrote {args.out} ({len(table.rows)} row(s))", file=sys.stderr)
    else:
        render_rich([table], make_console())
    return 0
