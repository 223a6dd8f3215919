"""``leukobench cache info|clear``: inspect and empty the caches (features, predictions, run state)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.common import add_cache_dir, make_console


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="feature cache: info, clear")
    add_cache_dir(p)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = actions.add_parser("info", help="entries and size, per backbone")
    info.set_defaults(func=run_info)
    clear = actions.add_parser("clear", help="delete cached features")
    clear.add_argument("--backbone", help="only this backbone's features (e.g. alexnet)")
    clear.set_defaults(func=run_clear)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def run_info(args: argparse.Namespace) -> int:
    from rich.table import Table

    from bench.feature_cache import FeatureCache
    from bench.prediction_cache import PredictionCache
    from bench.protocols.context import CacheRoot

    info = FeatureCache(args.cache_dir).info()
    packs = info.get("packs", 0)
    table = Table(
        title=f"Feature cache: {info['root']}",
        caption=f"{packs} pack file{'s' if packs != 1 else ''} (one per extracted batch)",
    )
    table.add_column("backbone")
    table.add_column("entries", justify="right")
    table.add_column("size", justify="right")
    for name, slot in sorted(info["backbones"].items()):
        table.add_row(name, str(slot["entries"]), _size(slot["bytes"]))
    table.add_row(
        "[bold]total[/]", f"[bold]{info['entries']}[/]", f"[bold]{_size(info['bytes'])}[/]"
    )
    preds = PredictionCache(args.cache_dir).info()
    table.add_row("(Model 1 predictions)", str(preds["entries"]), _size(preds["bytes"]))
    runs = run_state_info(CacheRoot.default(args.cache_dir).path / "runs")
    table.add_row(
        "(resumable run state)",
        f"{runs['cells']} cell(s), {runs['folds']} fold(s)",
        _size(runs["bytes"]),
    )
    make_console().print(table)
    return 0


def run_state_info(runs: Path) -> dict[str, int]:
    """Fine-tuning state kept to resume interrupted runs: cells, folds, bytes."""
    cells = [d for d in runs.iterdir() if d.is_dir()] if runs.is_dir() else []
    folds = sum(1 for d in cells for f in d.glob("fold-*") if f.is_dir())
    size = sum(f.stat().st_size for d in cells for f in d.rglob("*") if f.is_file())
    return {"cells": len(cells), "folds": folds, "bytes": size}


def run_clear(args: argparse.Namespace) -> int:

    from bench.feature_cache import FeatureCache
    from bench.prediction_cache import PredictionCache

    n = FeatureCache(args.cache_dir).clear(args.backbone)
    what = f"backbone {args.backbone!r}" if args.backbone else "all backbones"
    make_console().print(f"removed {n} cached feature vector(s) of {what}")
    if not args.backbone:
        m = PredictionCache(args.cache_dir).clear()
        make_console().print(f"removed {m} cached Model 1 prediction set(s)")
    return 0
