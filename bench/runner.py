"""The engine's main loop: suite -> plan -> (dataset -> features | fine-tune) -> metrics -> record.

Every arrow is a plain function from another module; this module only wires
them together, memoises what is shared inside one run (decoded images,
backbones, features) and keeps the result record up to date on disk so an
interrupted run leaves a record marked ``incomplete`` with what finished.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from bench.data.imageset import ImageSet, Samples
from bench.errors import UserError
from bench.registry import Registry, get_registry
from bench.results import (
    SCHEMA,
    compact_history,
    compact_transforms,
    environment,
    git_revision,
    new_run_id,
    now_iso,
    update_record,
    write_record,
)
from bench.suite import Cell, Suite

MODEL_NAMES = {"features": "Model 1", "finetune": "Model 2"}


@dataclass
class PreparedData:
    """The validated (and possibly balanced) dataset of a run, with its report."""

    imageset: ImageSet
    digests: list[str]
    fingerprint: str
    info: dict[str, Any]


@dataclass
class RunState:
    """What one run shares between its cells."""

    suite: Suite
    registry: Registry
    data: PreparedData
    console: Console
    progress: bool
    device: str
    cache: Any
    decoded: Any
    results_dir: Path = Path("results")
    backbones: dict[str, Any] = field(default_factory=dict)
    samples: dict[tuple[bool, int], Samples] = field(default_factory=dict)
    features: dict[tuple[str, bool, int], np.ndarray] = field(default_factory=dict)
    transforms: dict[str, list[str]] = field(default_factory=dict)
    timings: dict[str, float] = field(
        default_factory=lambda: {"validate_s": 0.0, "extract_s": 0.0, "fit_s": 0.0, "train_s": 0.0}
    )

    @property
    def mask(self) -> list[list[float]] | None:
        return self.suite.config["data"]["mask"] or None


# -- data ------------------------------------------------------------------------
def load_dataset(suite: Suite, registry: Registry) -> ImageSet:
    """Build the suite's ImageSet through its dataset plugin."""
    data = suite.config["data"]
    spec = registry.dataset(data["dataset"])
    path = suite.data_path()
    if spec.needs_path and path is None:
        raise UserError(
            f"suite {suite.name!r}: dataset {spec.name!r} needs a folder or file: "
            "pass --data PATH (or set data.path in the suite)"
        )
    if path is not None and not path.exists():
        raise UserError(f"dataset path {path} does not exist")
    try:
        return spec.factory(path, **data["options"])
    except TypeError as exc:
        raise UserError(
            f"dataset {spec.name!r}: bad option(s) {sorted(data['options'])}: {exc}"
        ) from None


def min_groups_needed(suite: Suite) -> int:
    """The fewest images (groups) each class needs for the suite's splits."""
    need = 2
    for proto in suite.protocols:
        need = max(need, int(proto.get("folds", 2)))
    return need


def prepare_data(suite: Suite, registry: Registry, *, skip_bad: bool | None = None) -> PreparedData:
    """Load, validate and (optionally) balance the dataset."""
    from bench.data.balance import undersample
    from bench.data.validate import validate

    data_cfg = suite.config["data"]
    imageset = load_dataset(suite, registry)
    skip = data_cfg["skip_bad"] if skip_bad is None else skip_bad
    imageset, report = validate(
        imageset,
        skip_bad=skip,
        max_pixels=data_cfg["max_pixels"],
        min_per_class=min_groups_needed(suite),
    )
    digests = list(report.digests)
    balance = None
    if data_cfg["balance"] == "undersample":
        by_path = dict(zip(imageset.paths, digests))
        imageset, balance = undersample(imageset, seed=suite.config["suite"]["seed"])
        digests = [by_path[p] for p in imageset.paths]
    path = suite.data_path()
    info = {
        "name": data_cfg.get("name") or (path.stem if path else data_cfg["dataset"]),
        "plugin": data_cfg["dataset"],
        "path": str(suite.data_path()) if suite.data_path() else None,
        "fingerprint": report.fingerprint,
        "n_images": len(imageset),
        "classes": list(imageset.classes),
        "positive": imageset.positive,
        "class_counts": imageset.class_counts(),
        "n_groups": len(set(imageset.groups)),
        "synthetic": bool(imageset.meta.get("synthetic")),
        "paths": [imageset.relpath(i) for i in range(len(imageset))],
        "excluded": [{"path": p, "reason": r} for p, r in report.excluded],
        "warnings": list(report.warnings),
        "balance": balance,
        "mask": data_cfg["mask"] or None,
    }
    return PreparedData(imageset, digests, report.fingerprint, info)


def samples_for(state: RunState, augment: bool, seed: int) -> Samples:
    """The samples a protocol sees: originals, or the suite's augmentation x copies."""
    aug = state.suite.config["augment"]
    use = augment and aug["scheme"] != "none" and aug["copies"] > 1
    key = (use, seed if use else 0)
    if key not in state.samples:
        if use:
            from bench.data.augment import expand

            state.samples[key] = expand(
                state.data.imageset, scheme=aug["scheme"], copies=aug["copies"], seed=seed
            )
        else:
            state.samples[key] = Samples.originals(state.data.imageset)
    return state.samples[key]


def augmentation_info(state: RunState, proto: dict[str, Any]) -> dict[str, Any] | None:
    aug = state.suite.config["augment"]
    if not proto["augment"] or aug["scheme"] == "none" or aug["copies"] <= 1:
        return None
    mode = "premade"
    if proto["kind"] == "finetune":
        mode = proto["settings"].get("augmentation", "premade")
    return {"scheme": aug["scheme"], "copies": aug["copies"], "mode": mode}


def splits_for(samples: Samples, proto: dict[str, Any], seed: int) -> tuple[list, dict[str, Any]]:
    """Train/test index pairs and their description for the record."""
    from bench.data.splits import make_folds, make_holdout

    leaky = proto["split"] == "paper-leaky"
    labels, groups = samples.labels, samples.groups
    if "folds" in proto:
        kind = "paper-leaky" if leaky else "grouped-kfold"
        splits = make_folds(labels, groups, folds=proto["folds"], seed=seed, kind=kind)
        info = {"kind": kind, "folds": proto["folds"], "holdout": None, "leaky": leaky}
    else:
        train, test = make_holdout(
            labels, groups, test_size=proto["holdout"], seed=seed, leaky=leaky
        )
        splits = [(train, test)]
        kind = "paper-leaky" if leaky else "grouped-holdout"
        info = {"kind": kind, "folds": None, "holdout": proto["holdout"], "leaky": leaky}
    return splits, info


# -- backbones and features ----------------------------------------------------------
def backbone_for(state: RunState, name: str) -> Any:
    if name not in state.backbones:
        options = state.suite.backbone_options(name)
        state.backbones[name] = state.registry.build_backbone(name, **options)
    return state.backbones[name]


def features_for(
    state: RunState, backbone_name: str, samples: Samples, augment: bool, seed: int
) -> np.ndarray:
    """Features of ``samples`` (from the cache where possible), memoised for the run."""
    from bench.extraction import extract_features

    key = (backbone_name, augment, seed)
    if key not in state.features:
        backbone = backbone_for(state, backbone_name)
        run_cfg = state.suite.config["run"]
        started = time.perf_counter()
        result = extract_features(
            samples,
            backbone,
            digests=state.data.digests,
            cache=state.cache,
            mask=state.mask,
            device=state.device,
            batch_size=run_cfg["batch_size"] or None,
            workers=run_cfg["workers"],
            progress=state.progress,
            decoded=state.decoded,
            decoder=run_cfg["decoder"],
        )
        state.timings["extract_s"] += time.perf_counter() - started
        state.console.print(
            f"[dim]{backbone_name}: {len(samples)} samples, {result.n_cached} from cache, "
            f"{result.n_computed} computed in {result.seconds:.1f}s[/dim]"
        )
        state.features[key] = result.features
    return state.features[key]


# -- cells -------------------------------------------------------------------------
def _base_cell(
    state: RunState, cell: Cell, proto: dict[str, Any], samples: Samples, split: dict
) -> dict:
    backbone = backbone_for(state, cell.backbone)
    imageset = state.data.imageset
    label = cell.classifier
    if cell.kind == "features":
        spec = state.registry.classifier(cell.classifier)
        label = spec.paper_label or spec.name
    else:
        label = "Fine-tuned"
    return {
        "id": cell.id,
        "status": "running",
        "protocol": cell.kind,
        "model": MODEL_NAMES[cell.kind],
        "backbone": cell.backbone,
        "backbone_info": backbone.describe(),
        "classifier": cell.classifier,
        "classifier_options": state.suite.classifier_options(cell.classifier)
        if cell.kind == "features"
        else {},
        "label": label,
        "seed": cell.seed,
        "split": split,
        "augmentation": augmentation_info(state, proto),
        "classes": list(imageset.classes),
        "positive": imageset.positive,
        "samples": {
            "source": samples.source.tolist(),
            "transforms": _transforms_ref(state, samples),
        },
    }


def _transforms_ref(state: RunState, samples: Samples) -> str:
    """Name of the sample transforms in the record's ``transforms`` table (stored once)."""
    keys = [t.key() for t in samples.transforms]
    if all(k == "id" for k in keys):
        return "identity"
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]
    state.transforms.setdefault(digest, keys)
    return digest


def _fold_records(preds: list[Any], n_classes: int, positive_index: int | None) -> list[dict]:
    from bench.metrics import compute_metrics

    folds = []
    for p in preds:
        score = None if p.score is None else np.asarray(p.score)
        folds.append(
            {
                "fold": int(p.fold),
                "test_index": np.asarray(p.test_index).tolist(),
                "y_true": np.asarray(p.y_true).tolist(),
                "y_pred": np.asarray(p.y_pred).tolist(),
                "score": None if score is None else np.round(score, 4).tolist(),
                "metrics": compute_metrics(
                    p.y_true, p.y_pred, score, n_classes=n_classes, positive_index=positive_index
                ),
                "fit_s": round(float(getattr(p, "fit_s", getattr(p, "train_s", 0.0))), 4),
            }
        )
    return folds


def run_features_protocol(
    state: RunState, index: int, proto: dict, seed: int, cells: list[Cell]
) -> list[dict]:
    """Model 1 for one protocol and seed: every backbone x classifier on shared folds."""
    from bench.metrics import summarize

    imageset = state.data.imageset
    n_classes = len(imageset.classes)
    samples = samples_for(state, proto["augment"], seed)
    splits, split_info = splits_for(samples, proto, seed)
    out = []
    for backbone_name in proto["backbones"]:
        mine = [c for c in cells if c.backbone == backbone_name]
        if not mine:
            continue
        X = features_for(state, backbone_name, samples, proto["augment"], seed)
        classifiers = {c.classifier: state.suite.classifier_options(c.classifier) for c in mine}
        started = time.perf_counter()
        preds, cached = _predictions(state, X, samples.labels, splits, classifiers)
        state.timings["fit_s"] += time.perf_counter() - started
        for cell in mine:
            rec = _base_cell(state, cell, proto, samples, split_info)
            rec["predictions_from_cache"] = cell.classifier in cached
            rec["folds"] = _fold_records(preds[cell.classifier], n_classes, imageset.positive_index)
            rec["metrics"] = summarize(
                preds[cell.classifier],
                n_classes=n_classes,
                positive_index=imageset.positive_index,
                seed=seed,
            )
            rec["status"] = "complete"
            out.append(rec)
        if proto["save_model"]:
            _save_feature_pipelines(state, backbone_name, X, samples, classifiers)
    return out


def _predictions(
    state: RunState, X: np.ndarray, y: np.ndarray, splits: list, classifiers: dict[str, dict]
) -> tuple[dict[str, list], set[str]]:
    """Fold predictions per classifier: from the prediction cache, else fitted (and cached)."""
    from bench.crossval import cross_validate
    from bench.prediction_cache import PredictionCache, data_digest, prediction_key

    positive = state.data.imageset.positive_index
    cache = PredictionCache() if state.cache is not None else None
    keys, preds = {}, {}
    if cache is not None:
        digest = data_digest(X, y, splits)
        for name, options in classifiers.items():
            keys[name] = prediction_key(digest, name, options, positive)
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
            n_jobs=state.suite.config["run"]["n_jobs"],
            registry=state.registry,
        )
        for name, result in fitted.items():
            preds[name] = result
            if cache is not None:
                cache.put(keys[name], result)
    if cached:
        state.console.print(f"[dim]predictions from cache: {', '.join(sorted(cached))}[/dim]")
    return preds, cached


def _save_feature_pipelines(
    state: RunState, backbone_name: str, X: np.ndarray, samples: Samples, classifiers: dict
) -> None:
    from bench.checkpoint import save_feature_pipeline

    imageset = state.data.imageset
    out_dir = state.results_dir / "models" / state.suite.name
    for name, options in classifiers.items():
        path = out_dir / f"{backbone_name.replace('/', '_')}-{name}.lbmodel"
        backbone = backbone_for(state, backbone_name)
        save_feature_pipeline(
            path,
            backbone_name,
            state.suite.backbone_options(backbone_name),
            name,
            options,
            X,
            samples.labels,
            list(imageset.classes),
            imageset.positive,
            {**backbone.preprocessing(), "mask": state.mask},
            backbone_info=backbone.describe(),
            dataset_fingerprint=state.data.fingerprint,
        )
        state.console.print(f"[dim]saved {path}[/dim]")


def run_finetune_cell(state: RunState, index: int, proto: dict, cell: Cell) -> dict:
    """Model 2 for one backbone and seed (hold-out or k-fold), resumable."""
    from bench.cache_paths import run_workdir
    from bench.metrics import summarize
    from bench.protocols.finetune import FinetuneSettings, finetune_cv

    imageset = state.data.imageset
    n_classes = len(imageset.classes)
    settings = FinetuneSettings.from_options({"device": state.device, **proto["settings"]})
    onthefly = settings.augmentation == "onthefly"
    samples = samples_for(state, proto["augment"] and not onthefly, cell.seed)
    splits, split_info = splits_for(samples, proto, cell.seed)
    workdir = run_workdir(state.suite.digest(), state.data.fingerprint, cell.id)
    rec = _base_cell(state, cell, proto, samples, split_info)
    started = time.perf_counter()
    results = finetune_cv(
        samples,
        backbone_for(state, cell.backbone),
        splits,
        settings,
        mask=state.mask,
        workdir=workdir,
        seed=cell.seed,
        progress=state.progress,
        positive_index=imageset.positive_index,
        backbone_name=cell.backbone,
        backbone_options=state.suite.backbone_options(cell.backbone),
        dataset_fingerprint=state.data.fingerprint,
        decoded=state.decoded,
        digests=state.data.digests,
    )
    state.timings["train_s"] += time.perf_counter() - started
    rec["folds"] = _fold_records(results, n_classes, imageset.positive_index)
    rec["metrics"] = summarize(
        results, n_classes=n_classes, positive_index=imageset.positive_index, seed=cell.seed
    )
    rec["training"] = {
        "settings": settings.as_dict(),
        "history": compact_history(list(results[0].history)),
        # the first fold's history is "history"; the others only when there are several
        "fold_histories": (
            [compact_history(list(r.history)) for r in results] if len(results) > 1 else []
        ),
        "val_histories": [list(r.val_history) for r in results],
        "selected": [r.selected for r in results],
        "epochs_run": [r.epochs_run for r in results],
        "images_per_s": [round(float(r.images_per_s), 2) for r in results],
        "checkpoints": [str(r.best_path) for r in results],
    }
    if proto["save_model"]:
        rec["training"]["saved_models"] = _save_finetuned(state, cell, results)
    rec["status"] = "complete"
    return rec


def _save_finetuned(state: RunState, cell: Cell, results: list) -> list[str]:
    """Copy each fold's selected checkpoint next to the results, for ``leukobench predict``."""
    import shutil

    from bench.atomic import atomic_path

    out_dir = state.results_dir / "models" / state.suite.name
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    for r in results:
        src = Path(r.best_path if r.selected == "best" else r.last_path)
        dst = (
            out_dir
            / f"{cell.backbone.replace('/', '_')}-finetune-seed{cell.seed}-fold{r.fold}.safetensors"
        )
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        saved.append(str(dst))
        state.console.print(f"[dim]saved {dst}[/dim]")
    return saved


# -- the run --------------------------------------------------------------------
def new_record(suite: Suite, data: PreparedData, device: str) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "run_id": new_run_id(suite.name, suite.digest()),
        "status": "incomplete",
        "started": now_iso(),
        "finished": None,
        "suite": {
            "name": suite.name,
            "description": suite.config["suite"]["description"],
            "path": str(suite.path) if suite.path else None,
            "sha256": suite.source_sha256,
            "config_sha256": suite.digest(),
            "config": suite.config,
        },
        "seeds": suite.seeds,
        "dataset": data.info,
        "environment": environment(device),
        "git_revision": git_revision(),
        "timings": {},
        "cells": [],
    }


def resolve_device(requested: str) -> str:
    from bench.device import resolve_device as resolve

    return str(resolve(requested))


def run_suite(
    suite: Suite,
    *,
    registry: Registry | None = None,
    results_dir: Path | None = None,
    console: Console | None = None,
    progress: bool = True,
    skip_bad: bool | None = None,
    cache_dir: Path | None = None,
    use_cache: bool | None = None,
) -> tuple[dict[str, Any], Path]:
    """Run every cell of ``suite``; return the record and where it was written."""
    from bench.extraction import DecodedImages
    from bench.feature_cache import FeatureCache

    registry = registry or get_registry()
    console = console or Console(stderr=True)
    started = time.perf_counter()
    run_cfg = suite.config["run"]
    device = resolve_device(run_cfg["device"])

    t0 = time.perf_counter()
    data = prepare_data(suite, registry, skip_bad=skip_bad)
    validate_s = time.perf_counter() - t0
    if data.info["synthetic"]:
        console.print(
            "[yellow]dataset is SYNTHETIC (procedurally drawn): for smoke tests, never for claims[/yellow]"
        )
    if any(p["split"] == "paper-leaky" for p in suite.protocols):
        console.print(
            "[bold red]LEAKY split requested (paper order: augment, then split): "
            "copies of one image sit on both sides; accuracy is inflated[/bold red]"
        )

    cache_on = run_cfg["cache"] if use_cache is None else use_cache
    state = RunState(
        suite=suite,
        registry=registry,
        data=data,
        console=console,
        progress=progress,
        device=device,
        cache=FeatureCache(cache_dir) if cache_on else None,
        decoded=DecodedImages(),
    )
    state.timings["validate_s"] = validate_s
    record = new_record(suite, data, device)
    out_dir = Path(results_dir or suite.config["suite"]["results_dir"])
    state.results_dir = out_dir
    path = write_record(record, out_dir)
    console.print(f"[dim]result record: {path}[/dim]")

    cells = suite.cells()
    try:
        for seed in suite.seeds:
            for index, proto in enumerate(suite.protocols):
                mine = [c for c in cells if c.seed == seed and c.protocol_index == index]
                if proto["kind"] == "features":
                    record["cells"].extend(run_features_protocol(state, index, proto, seed, mine))
                    _checkpoint(record, state, started, path)
                else:
                    for cell in mine:
                        record["cells"].append(run_finetune_cell(state, index, proto, cell))
                        _checkpoint(record, state, started, path)
        record["status"] = "complete"
    finally:
        record["finished"] = now_iso()
        _checkpoint(record, state, started, path)
    return record, path


def _checkpoint(record: dict, state: RunState, started: float, path: Path) -> None:
    record["transforms"] = {ref: compact_transforms(k) for ref, k in state.transforms.items()}
    record["timings"] = {
        **{k: round(v, 3) for k, v in state.timings.items()},
        "total_s": round(time.perf_counter() - started, 3),
    }
    update_record(record, path)
