"""``leukobench`` command line: one module per command in this package.

Each command module has ``register(subparsers)`` that adds its parser and sets
``func`` (called with the parsed namespace; returns an exit code).
Exit codes: 0 success, 1 internal error (or a failed check, e.g. ``compare``),
2 usage or input error (one clear line, no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from bench import __version__
from bench.errors import UserError

COMMANDS = (
    "run",
    "list",
    "report",
    "leaderboard",
    "compare",
    "extract",
    "cache",
    "predict",
    "augment_preview",
    "audit",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leukobench",
        description="Benchmark transfer learning on blood-smear microscopy (leukemia detection).",
    )
    parser.add_argument("--version", action="version", version=f"leukobench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"bench.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from bench.malloc_tuning import prepare_malloc

    prepare_malloc()  # one malloc arena, set before any thread exists (bench/malloc_tuning.py)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        # `leukobench` alone runs the offline quickstart, the main job.
        if args.command is None and argv is None and len(sys.argv) == 1:
            args = parser.parse_args(["run"])
        else:
            parser.print_help()
            return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"leukobench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("leukobench: interrupted; finished work is kept (rerun to resume)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns crashes into exit 1
        if os.environ.get("LEUKOBENCH_DEBUG"):
            traceback.print_exc()
        else:
            print(
                f"leukobench: internal error: {type(exc).__name__}: {exc}\n"
                "(set LEUKOBENCH_DEBUG=1 for the traceback)",
                file=sys.stderr,
            )
        return 1


if __name__ == "__main__":
    sys.exit(main())
