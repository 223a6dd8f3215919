"""``leukobench cache info|clear``: inspect and empty the caches (features, predictions, run state)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.common import add_cache_dir, make_console


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="the caches: info, clear")
    add_cache_dir(p)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = actions.add_parser("info", help="entries and size, per backbone")
    info.set_defaults(func=run_info)
    clear = actions.add_parser(
        "clear",
        help="delete cached features and Model 1 predictions (--runs: fine-tuning state too; "
        "--all: everything)",
    )
    what = clear.add_mutually_exclusive_group()
    what.add_argument("--backbone", help="only this backbone's features (e.g. alexnet)")
    what.add_argument(
        "--runs",
        action="store_true",
        help="also the resumable fine-tuning state (runs/): interrupted Model 2 runs start afresh",
    )
    what.add_argument(
        "--all",
        action="store_true",
        help="everything the cache holds: also run state, drawn synthetic sets, image verdicts, "
        "audit properties, throughput and weight digests",
    )
    clear.set_defaults(func=run_clear)


#: What ``cache clear --all`` removes besides features and predictions (CacheRoot's layout).
OTHER_PARTS = (
    "runs",
    "synthetic",
    "validated",
    "audit",
    "throughput.json",
    "forward-chunks.json",
    "weights-digests.json",
)


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
    if info.get("unreadable"):
        table.add_row(
            "[yellow](unreadable packs)[/]",
            f"[yellow]{info['unreadable']}[/]",
            "[yellow]the next run recomputes them[/]",
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
    import shutil

    from bench.feature_cache import FeatureCache
    from bench.prediction_cache import PredictionCache
    from bench.protocols.context import CacheRoot

    console = make_console()
    features = FeatureCache(args.cache_dir)
    if args.backbone:
        _check_backbone(args.backbone, features)
    n = features.clear(args.backbone)
    what = f"backbone {args.backbone!r}" if args.backbone else "all backbones"
    console.print(f"removed {n} cached feature vector(s) of {what}")
    if args.backbone:
        return 0
    m = PredictionCache(args.cache_dir).clear()
    console.print(f"removed {m} cached Model 1 prediction set(s)")
    root = CacheRoot.default(args.cache_dir).path
    parts = OTHER_PARTS if args.all else ("runs",) if args.runs else ()
    for name in parts:
        path = root / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink(missing_ok=True)
        else:
            continue
        console.print(f"removed {path}", markup=False, soft_wrap=True)
    return 0


def _check_backbone(name: str, features) -> None:
    """A name that is neither cached nor registered is a typo: exit 2 with the close ones."""
    from bench.errors import UserError
    from bench.registry import get_registry, suggest

    cached = set(features.info()["backbones"])
    known = cached | set(get_registry().backbones)
    if name in known or any(name.startswith(f"{b}/") for b in known):
        return
    hint = suggest(name, sorted(known)) or (
        f" (cached: {', '.join(sorted(cached))})" if cached else " (nothing is cached)"
    )
    raise UserError(f"cache clear --backbone: no backbone {name!r}{hint}")
