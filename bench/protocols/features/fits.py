"""Model 1's work: fold predictions per classifier (cached), and saved pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from bench.data.imageset import Samples
    from bench.protocols.context import RunContext


def predictions(
    ctx: RunContext, X: np.ndarray, y: np.ndarray, splits: list, classifiers: dict[str, dict]
) -> tuple[dict[str, list], set[str]]:
    """Fold predictions per classifier: from the prediction cache, else fitted (and cached).

    Every classifier not cached is fitted in one :func:`bench.crossval.cross_validate`
    call, so SVMs and 1-NN share one Gram matrix.
    """
    from bench.code_digest import classifier_code
    from bench.crossval import cross_validate
    from bench.prediction_cache import data_digest, prediction_key

    positive = ctx.data.imageset.positive_index
    cache = ctx.prediction_cache
    keys, preds = {}, {}
    if cache is not None:
        digest = data_digest(X, y, splits)
        for name, options in classifiers.items():
            code = classifier_code(ctx.registry.classifier(name).factory)
            keys[name] = prediction_key(digest, name, options, positive, code)
            hit = cache.get(keys[name])
            if hit is not None:
                preds[name] = hit
    cached = set(preds)
    todo = {n: o for n, o in classifiers.items() if n not in preds}
    if todo:
        fitted = cross_validate(
            X,
            y,
            splits,
            todo,
            positive_index=positive,
            n_jobs=ctx.suite.config["run"]["n_jobs"],
            registry=ctx.registry,
            memory_limit=ctx.suite.config["run"].get("memory_limit", "auto"),
            device=ctx.device if str(ctx.device).startswith("cuda") else "cpu",
            note=lambda text: ctx.console.print(f"[yellow]{text}[/yellow]"),
        )
        for name, result in fitted.items():
            preds[name] = result
            if cache is not None:
                cache.put(keys[name], result)
    if cached:
        ctx.console.print(f"[dim]predictions from cache: {', '.join(sorted(cached))}[/dim]")
    return preds, cached


def save_pipeline(
    ctx: RunContext,
    backbone_name: str,
    classifier: str,
    options: dict[str, Any],
    X: np.ndarray,
    samples: Samples,
) -> Path:
    """Save one Model 1 pipeline (backbone + classifier refitted on load) under the run's models."""
    from bench.checkpoint import save_feature_pipeline
    from bench.protocols.cells import safe_name

    imageset = ctx.data.imageset
    path = ctx.models_dir / f"{safe_name(backbone_name)}-{classifier}.lbmodel"
    backbone = ctx.backbone(backbone_name)
    save_feature_pipeline(
        path,
        backbone_name,
        ctx.suite.backbone_options(backbone_name),
        classifier,
        options,
        X,
        samples.labels,
        list(imageset.classes),
        imageset.positive,
        {**backbone.preprocessing(), "mask": ctx.mask},
        backbone_info=backbone.describe(),
        dataset_fingerprint=ctx.data.fingerprint,
    )
    ctx.console.print(f"[dim]saved {path}[/dim]", soft_wrap=True)
    return path
