"""``leukobench run --dry-run``: the plan of a suite and what the caches already hold."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from bench.errors import UserError
from bench.registry import Registry
from bench.suite import Suite


def plan_rows(suite: Suite, registry: Registry) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The dataset summary and one row per (protocol, backbone, seed) with cache status."""
    from bench.cache_paths import run_workdir
    from bench.extraction import sample_keys
    from bench.feature_cache import FeatureCache
    from bench.runner import RunState, prepare_data, resolve_device, samples_for, splits_for

    data = prepare_data(suite, registry)
    device = resolve_device(suite.config["run"]["device"])
    state = RunState(
        suite=suite,
        registry=registry,
        data=data,
        console=Console(stderr=True),
        progress=False,
        device=device,
        cache=FeatureCache(),
        decoded=None,
    )
    rows = []
    for seed in suite.seeds:
        for index, proto in enumerate(suite.protocols):
            onthefly = proto["settings"].get("augmentation") == "onthefly"
            samples = samples_for(state, proto["augment"] and not onthefly, seed)
            splits, split = splits_for(samples, proto, seed)
            for name in proto["backbones"]:
                row: dict[str, Any] = {
                    "protocol": index,
                    "kind": proto["kind"],
                    "backbone": name,
                    "seed": seed,
                    "what": ", ".join(proto["classifiers"]) or "fine-tune",
                    "split": split["kind"] + (f" x{len(splits)}" if len(splits) > 1 else ""),
                    "leaky": split["leaky"],
                    "samples": len(samples),
                }
                try:
                    backbone = state.registry.build_backbone(name, **suite.backbone_options(name))
                except UserError as exc:
                    row["status"] = f"cannot build: {exc}"
                    rows.append(row)
                    continue
                if proto["kind"] == "features":
                    keys = sample_keys(
                        samples,
                        backbone,
                        data.digests,
                        state.mask,
                        device,
                        suite.config["run"]["decoder"],
                    )
                    cached = state.cache.count(keys)
                    row["status"] = f"{cached} cached, {len(keys) - cached} to extract"
                else:
                    cell_id = f"finetune|{name}|finetune|seed={seed}|p{index}"
                    workdir = run_workdir(suite.digest(), data.fingerprint, cell_id)
                    done = len(list(workdir.glob("fold-*/result.json"))) if workdir.exists() else 0
                    epochs = int(proto["settings"].get("epochs", 6))
                    steps = sum(len(train) for train, _ in splits) * epochs
                    row["status"] = (
                        f"{done}/{len(splits)} folds done; {steps} training image-steps in all"
                    )
                rows.append(row)
    summary = {
        "dataset": data.info["name"],
        "images": data.info["n_images"],
        "classes": data.info["class_counts"],
        "positive": data.info["positive"],
        "cells": len(suite.cells()),
    }
    return summary, rows


def print_plan(suite: Suite, registry: Registry, console: Console) -> None:
    summary, rows = plan_rows(suite, registry)
    console.print(
        f"[bold]{suite.name}[/bold]: dataset {summary['dataset']} ({summary['images']} images, "
        f"{summary['classes']}, positive {summary['positive']!r}); {summary['cells']} cells"
    )
    table = Table(title="Plan (dry run: nothing is computed)")
    for col in ("#", "kind", "backbone", "seed", "classifiers", "split", "samples", "status"):
        table.add_column(col)
    for r in rows:
        split = r["split"] + (" [bold red]LEAKY[/bold red]" if r["leaky"] else "")
        table.add_row(
            str(r["protocol"]),
            r["kind"],
            r["backbone"],
            str(r["seed"]),
            r["what"],
            split,
            str(r["samples"]),
            r["status"],
        )
    console.print(table)
