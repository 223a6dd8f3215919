"""``leukobench`` command line: one module per command in this package.

Each command module has ``register(subparsers)`` that adds its parser and sets
``func`` (called with the parsed namespace; returns an exit code).
Exit codes: 0 success, 1 internal error (or a failed check, e.g. ``compare``),
2 usage or input error (one clear line, no traceback).

:func:`main` also makes standard output and error print any file name (bytes
that are not UTF-8 as ``\\xNN``, :mod:`bench.readable`), shows LeukoBench's own
warnings as ``leukobench: warning: ...`` lines, and reports an operating-system
error about a named file (permission, a folder given for a file, ...) as exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

from bench import __version__
from bench.errors import UserError
from bench.readable import make_streams_readable, readable

_OWN_CODE = (Path(__file__).resolve().parents[1], Path(__file__).resolve().parents[2] / "plugins")

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


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (exit 2), pointing at ``--help``."""

    def error(self, message: str) -> Any:  # argparse's own signature: never returns
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """LeukoBench's own warnings as one ``leukobench: warning:`` line; others as Python shows them."""
    try:
        own = any(Path(filename).resolve().is_relative_to(root) for root in _OWN_CODE)
    except (OSError, ValueError):
        own = False
    stream = file or sys.stderr
    if own:
        stream.write(f"leukobench: warning: {readable(message)}\n")
    else:
        stream.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: list[str] | None = None) -> int:
    from bench.malloc_tuning import prepare_malloc

    prepare_malloc()  # one malloc arena, set before any thread exists (bench/malloc_tuning.py)
    make_streams_readable(sys.stdout, sys.stderr)
    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return _main(argv)
    finally:
        warnings.showwarning = shown


def _main(argv: list[str] | None) -> int:
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
        _check_cache_root(args)
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"leukobench: error: {readable(exc)}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if exc.filename is None or os.environ.get("LEUKOBENCH_DEBUG"):
            return _internal_error(exc)
        what = readable(exc.filename) + (f" -> {readable(exc.filename2)}" if exc.filename2 else "")
        where = _cache_hint(args, str(exc.filename))
        print(f"leukobench: error: {what}: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("leukobench: interrupted; finished work is kept (rerun to resume)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns crashes into exit 1
        return _internal_error(exc)


def _cache_root(args: argparse.Namespace) -> tuple[Path, str] | None:
    """The command's cache folder and where it came from (None: the command has none)."""
    from bench.cache_paths import default_cache_root

    if not hasattr(args, "cache_dir"):
        return None
    if args.cache_dir is not None:
        return Path(args.cache_dir), "--cache-dir"
    from_env = bool(os.environ.get("LEUKOBENCH_CACHE"))
    return default_cache_root(), "$LEUKOBENCH_CACHE" if from_env else "the default cache folder"


def _check_cache_root(args: argparse.Namespace) -> None:
    """A cache folder that is a file is one line naming where it was set, before any work."""
    root = _cache_root(args)
    if root is not None and root[0].exists() and not root[0].is_dir():
        raise UserError(f"{root[1]} {readable(root[0])} is a file, not a folder; give a folder")


def _cache_hint(args: argparse.Namespace, filename: str) -> str:
    root = _cache_root(args)
    if root is None or not filename.startswith(str(root[0])):
        return ""
    return f" (under the cache folder, {root[1]}: give one that can be created and written)"


def _internal_error(exc: BaseException) -> int:
    if os.environ.get("LEUKOBENCH_DEBUG"):
        traceback.print_exception(exc)
    else:
        print(
            f"leukobench: internal error: {type(exc).__name__}: {readable(exc)}\n"
            "(set LEUKOBENCH_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
    return 1


if __name__ == "__main__":
    sys.exit(main())
