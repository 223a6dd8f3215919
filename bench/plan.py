"""``leukobench run --dry-run``: the plan of a suite and what the caches already hold.

Each table's protocol plans its own rows (:meth:`bench.protocols.base.Protocol.plan`).
A row that cannot be built (missing weights, an unknown model) is marked not ok:
the dry run then exits 2 listing why, so it serves as a CI preflight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.protocols.base import PlanRow
from bench.registry import Registry
from bench.suite import Suite


def plan_rows(
    suite: Suite,
    registry: Registry,
    *,
    cache_dir: Path | None = None,
    skip_bad: bool | None = None,
    use_cache: bool | None = None,
) -> tuple[dict[str, Any], list[PlanRow]]:
    """The dataset summary and each protocol's rows (per table, backbone and seed).

    ``skip_bad`` and ``use_cache`` are the run's ``--skip-bad`` / ``--no-cache``
    (None: the suite's ``[data] skip_bad`` / ``[run] cache``), as in a real run.
    """
    from bench.data.prepare import prepare_data
    from bench.protocols.context import CacheRoot, RunContext
    from bench.runner import resolve_device

    cache = CacheRoot.default(cache_dir)
    with cache.activate():
        data = prepare_data(suite, registry, skip_bad=skip_bad, cache_dir=cache.path)
        ctx = RunContext(
            suite=suite,
            registry=registry,
            data=data,
            device=resolve_device(suite.config["run"]["device"]),
            cache=cache,
            use_cache=suite.config["run"]["cache"] if use_cache is None else use_cache,
            console=Console(stderr=True),
            progress=False,
        )
        rows: list[PlanRow] = []
        for seed in suite.seeds:
            for index, table in enumerate(suite.protocols):
                rows.extend(ctx.protocol(table["kind"]).plan(ctx, table, index, seed))
    summary = {
        "dataset": data.info["name"],
        "images": data.info["n_images"],
        "classes": data.info["class_counts"],
        "positive": data.info["positive"],
        "cells": len(suite.cells(registry)),
    }
    return summary, rows


def print_plan(
    suite: Suite,
    registry: Registry,
    console: Console,
    *,
    cache_dir: Path | None = None,
    skip_bad: bool | None = None,
    use_cache: bool | None = None,
) -> int:
    """Print the plan; return the exit code (2 when a row cannot be built, else 0)."""
    summary, rows = plan_rows(
        suite, registry, cache_dir=cache_dir, skip_bad=skip_bad, use_cache=use_cache
    )
    console.print(
        f"[bold]{suite.name}[/bold]: dataset {summary['dataset']} ({summary['images']} images, "
        f"{summary['classes']}, positive {summary['positive']!r}); {summary['cells']} cells"
    )
    from bench.throughput import describe_seconds

    table = Table(title="Plan (dry run: nothing is computed)")
    cols = (
        "#",
        "kind",
        "backbone",
        "seed",
        "classifiers",
        "split",
        "samples",
        "status",
        "estimate",
    )
    for col in cols:
        table.add_column(col)
    for r in rows:
        split = r.split + (" [bold red]LEAKY[/bold red]" if r.leaky else "")
        status = r.status if r.ok else f"[red]{r.status}[/red]"
        estimate = (
            "-"
            if not r.ok
            else (
                "nothing to do"
                if r.estimate_s == 0 and not r.work
                else describe_seconds(r.estimate_s)
            )
        )
        table.add_row(
            str(r.protocol),
            r.kind,
            r.backbone,
            str(r.seed),
            r.what,
            split,
            str(r.samples),
            status,
            estimate,
        )
    console.print(table)
    for r in rows:
        for note in r.notes:
            line = f"note: protocol[{r.protocol}] {r.kind} {r.backbone}: {note}"
            console.print(line, markup=False, soft_wrap=True)
    _print_estimate(rows, suite, console)
    bad = [r for r in rows if not r.ok]
    if not bad:
        return 0
    err = Console(stderr=True)
    for r in bad:
        err.print(f"error: protocol[{r.protocol}] {r.kind} {r.backbone}: {r.status}", markup=False)
    return 2


def _print_estimate(rows: list[PlanRow], suite: Suite, console: Console) -> None:
    """The total estimate, and a warning when fine-tuning on a CPU will take hours."""
    from bench.throughput import describe_seconds

    known = [r.estimate_s for r in rows if r.ok and r.estimate_s is not None]
    unknown = [r for r in rows if r.ok and r.estimate_s is None and r.work]
    total = sum(known)
    text = f"estimated time: {describe_seconds(total) if known else 'no estimate yet'}"
    if known and unknown:
        text += f" for what was measured; no estimate yet for {len(unknown)} row(s)"
    if unknown:
        text += " (a first run on this machine and device measures it)"
    console.print(text, markup=False)
    device = str(suite.config["run"]["device"])
    on_cpu = device == "cpu" or (device == "auto" and not _has_gpu())
    slow = [r for r in rows if r.trains and r.ok and r.work]
    if on_cpu and slow:
        hours = sum(r.estimate_s or 0 for r in slow) / 3600
        if hours >= 1:
            console.print(
                f"warning: fine-tuning on the CPU will take about {hours:.1f} h; a CUDA GPU "
                "(--set run.device=cuda) is 100-1000x faster",
                markup=False,
            )
        elif any(r.estimate_s is None for r in slow):
            console.print(
                "warning: fine-tuning on the CPU runs at about 1-2 images/s on 2 cores "
                f"({', '.join(r.work for r in slow)}): it may take hours",
                markup=False,
            )


def _has_gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False
