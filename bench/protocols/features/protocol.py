"""Model 1 as a protocol: pretrained features, then classical classifiers under k-fold CV.

Jobs: one ``extract`` job per backbone (its features, from the cache where
possible) and one ``fit`` job per (backbone, classifier) depending on it. In
one process the first ``fit`` job of a backbone fits every classifier of that
backbone at once (one shared Gram matrix, as before jobs existed); the others
take their share from the context's memo. Results are the same either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bench.errors import UserError
from bench.protocols.base import Job, PlanRow, Protocol
from bench.protocols.tables import (
    AUGMENT,
    BACKBONES,
    CLASSIFIERS,
    FOLDS,
    SAVE_MODEL,
    SETTINGS,
    SPLIT,
    backbone_image_reads,
    resolve_table,
)
from bench.suite import Cell

if TYPE_CHECKING:
    from bench.protocols.context import RunContext
    from bench.records import CellRecord
    from bench.registry import Registry

_MEMO = "features.fits"


class FeaturesProtocol(Protocol):
    """Model 1 (Loey et al.): backbone features x classifiers on shared grouped folds."""

    name = "features"
    model = "Model 1"
    description = "pretrained backbone features + classical classifiers, k-fold CV (Model 1)"
    table_keys = (BACKBONES, CLASSIFIERS, FOLDS, SPLIT, AUGMENT, SETTINGS, SAVE_MODEL)
    settings = ()

    # -- suite time -----------------------------------------------------------------------
    def validate(self, table: Mapping[str, Any], where: str, registry: Registry | None) -> dict:
        if "holdout" in table:
            raise UserError(f"{where}.holdout: features protocols use folds (k-fold CV)")
        out = resolve_table(self.table_keys, table, where, default_folds=10)
        if not out["classifiers"]:
            raise UserError(f"{where}.classifiers: missing: a features protocol needs classifiers")
        if out["settings"]:
            key = next(iter(out["settings"]))
            raise UserError(f"{where}.settings.{key}: unknown key (features takes no settings)")
        return out

    def image_reads(self, ctx: RunContext, table: Mapping[str, Any]) -> int:
        return backbone_image_reads(ctx, table)

    def cells(self, table: Mapping[str, Any], index: int, seed: int) -> list[Cell]:
        return [
            Cell(index, self.name, b, c, seed)
            for b in table["backbones"]
            for c in table["classifiers"]
        ]

    def plan(
        self, ctx: RunContext, table: Mapping[str, Any], index: int, seed: int
    ) -> list[PlanRow]:
        from bench.protocols.planning import (
            backbone_plan_row,
            feature_cache_status,
            fit_size_notes,
        )

        samples = ctx.samples(table["augment"], seed)
        splits, split = ctx.splits(samples, table, seed)
        rows = []
        for name in table["backbones"]:
            row, backbone = backbone_plan_row(
                ctx,
                protocol=index,
                kind=self.name,
                backbone=name,
                seed=seed,
                what=", ".join(table["classifiers"]),
                split=split.kind + (f" x{len(splits)}" if len(splits) > 1 else ""),
                leaky=split.leaky,
                samples=len(samples),
            )
            if backbone is not None:
                status = feature_cache_status(ctx, row, samples, backbone)
                row.status = f"{status.cached} cached, {status.todo} to extract"
                n_train = max(len(train) for train, _ in splits)
                row.notes = fit_size_notes(ctx, table["classifiers"], n_train, backbone.feature_dim)
            rows.append(row)
        return rows

    # -- run time --------------------------------------------------------------------------
    def jobs(
        self, ctx: RunContext, table: Mapping[str, Any], index: int, seed: int, cells: list[Cell]
    ) -> list[Job]:
        from bench.protocols.planning import extract_and_fit_jobs

        common = {"table": dict(table), "index": index, "seed": seed}
        out: list[Job] = []
        for name in table["backbones"]:
            mine = [c for c in cells if c.backbone == name]
            if not mine:
                continue
            ctx.backbone(name)  # a backbone that cannot be built fails now, before any work
            out += extract_and_fit_jobs(
                self.name,
                f"p{index}|seed={seed}|extract|{name}",
                name,
                common,
                mine,
                network=ctx.network_resources(),
                fits=ctx.fit_resources(),
            )
        return out

    def run_job(self, ctx: RunContext, job: Job, inputs: Mapping[str, Any]) -> Any:
        p = job.payload
        table, seed = p["table"], p["seed"]
        samples = ctx.samples(table["augment"], seed)
        if job.kind == "extract":
            return ctx.features(p["backbone"], samples, table["augment"], seed)
        from bench.protocols.features.fits import predictions
        from bench.protocols.planning import memo_fits

        def fit(names: Sequence[str]) -> dict[str, Any]:
            splits, _ = ctx.splits(samples, table, seed)
            classifiers = {n: ctx.suite.classifier_options(n) for n in names}
            preds, cached = predictions(
                ctx, inputs[job.deps[0]], samples.labels, splits, classifiers
            )
            return {n: {"folds": preds[n], "from_cache": n in cached} for n in names}

        return memo_fits(ctx, job, _MEMO, fit)

    def assemble(
        self,
        ctx: RunContext,
        table: Mapping[str, Any],
        index: int,
        seed: int,
        cells: list[Cell],
        results: Mapping[str, Any],
    ) -> list[CellRecord]:
        from bench.metrics import summarize
        from bench.protocols.cells import base_cell, fold_records, model_entry
        from bench.protocols.features.fits import save_pipeline
        from bench.units import pooled_units, sample_units

        imageset = ctx.data.imageset
        n_classes, positive = len(imageset.classes), imageset.positive_index
        samples = ctx.samples(table["augment"], seed)
        _, split = ctx.splits(samples, table, seed)
        units, unit = sample_units(samples)  # intervals over source images or patients
        out = []
        for cell in cells:
            fit = results[f"fit|{cell.id}"]
            spec = ctx.registry.classifier(cell.classifier)
            options = ctx.suite.classifier_options(cell.classifier)
            rec = base_cell(
                ctx,
                cell,
                model=self.model,
                label=spec.paper_label or spec.name,
                samples=samples,
                split=split,
                augmentation=ctx.augmentation_info(table["augment"]),
                classifier_options=options,
            )
            rec.predictions_from_cache = fit["from_cache"]
            rec.folds = fold_records(fit["folds"], n_classes, positive)
            rec.metrics = summarize(
                fit["folds"],
                n_classes=n_classes,
                positive_index=positive,
                seed=seed,
                units=pooled_units(fit["folds"], units),
                unit=unit,
            )
            if table["save_model"]:
                X = results[f"p{index}|seed={seed}|extract|{cell.backbone}"]
                path = save_pipeline(ctx, cell.backbone, cell.classifier, options, X, samples)
                rec.sections["models"] = [model_entry(ctx, path, None)]
            rec.status = "complete"
            out.append(rec)
        return out
