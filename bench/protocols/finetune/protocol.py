"""Model 2 as a protocol: fine-tune each backbone with a new head, one ``train`` job per fold.

Each fold is resumable on its own in the cell's run folder of the cache root
(``CacheRoot.run_dir``, keyed by suite digest + dataset fingerprint + cell id,
as before jobs existed), so a killed run started again — with any executor —
trains only what is missing and ends with the same record.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import UserError
from bench.protocols.base import Job, PlanRow, Protocol, check_table
from bench.protocols.finetune.settings import SETTINGS, FinetuneSettings
from bench.protocols.tables import (
    AUGMENT,
    BACKBONES,
    CLASSIFIERS,
    FOLDS,
    HOLDOUT,
    SAVE_MODEL,
    SPLIT,
    resolve_table,
)
from bench.protocols.tables import (
    SETTINGS as SETTINGS_KEY,
)
from bench.suite import Cell

if TYPE_CHECKING:
    from bench.protocols.context import RunContext
    from bench.records import CellRecord
    from bench.registry import Registry

_CHOICES = {s.name for s in SETTINGS if s.choices is not None}


class FinetuneProtocol(Protocol):
    """Model 2 (Loey et al.): fine-tune a backbone with a new k-class head, per split."""

    name = "finetune"
    model = "Model 2"
    description = "fine-tune each backbone with a new head, hold-out or k-fold (Model 2)"
    table_keys = (BACKBONES, CLASSIFIERS, FOLDS, HOLDOUT, SPLIT, AUGMENT, SETTINGS_KEY, SAVE_MODEL)
    settings = SETTINGS

    # -- suite time -----------------------------------------------------------------------
    def validate(self, table: Mapping[str, Any], where: str, registry: Registry | None) -> dict:
        out = resolve_table(self.table_keys, table, where)
        if out["classifiers"]:
            raise UserError(
                f"{where}.classifiers: a finetune protocol trains its own head; remove it"
            )
        given = out["settings"]
        # choices are compared case-insensitively (the settings have always been)
        folded = {
            k: v.lower() if k in _CHOICES and isinstance(v, str) else v for k, v in given.items()
        }
        check_table(self.settings, folded, f"{where}.settings", fill_defaults=False)
        try:
            FinetuneSettings.from_options(given)  # cross-key checks (patience, cuda_graph)
        except UserError as exc:
            raise UserError(f"{where}.settings: {exc}") from None
        return out

    def cells(self, table: Mapping[str, Any], index: int, seed: int) -> list[Cell]:
        return [Cell(index, self.name, b, "finetune", seed) for b in table["backbones"]]

    def fine_settings(self, ctx: RunContext, table: Mapping[str, Any]) -> FinetuneSettings:
        """The table's settings resolved for this run (the run's device unless it names one)."""
        return FinetuneSettings.from_options({"device": ctx.device, **table["settings"]})

    def _samples(self, ctx: RunContext, table: Mapping[str, Any], seed: int) -> Any:
        onthefly = self.fine_settings(ctx, table).augmentation == "onthefly"
        return ctx.samples(table["augment"] and not onthefly, seed)

    def plan(
        self, ctx: RunContext, table: Mapping[str, Any], index: int, seed: int
    ) -> list[PlanRow]:
        from bench.protocols.planning import backbone_plan_row

        samples = self._samples(ctx, table, seed)
        splits, split = ctx.splits(samples, table, seed)
        epochs = self.fine_settings(ctx, table).epochs
        rows = []
        for cell in self.cells(table, index, seed):
            row, backbone = backbone_plan_row(
                ctx,
                protocol=index,
                kind=self.name,
                backbone=cell.backbone,
                seed=seed,
                what="fine-tune",
                split=split.kind + (f" x{len(splits)}" if len(splits) > 1 else ""),
                leaky=split.leaky,
                samples=len(samples),
            )
            if backbone is None:
                rows.append(row)
                continue
            workdir = ctx.run_dir(cell.id)
            finished = (
                {int(f.parent.name.split("-")[1]) for f in workdir.glob("fold-*/result.json")}
                if workdir.exists()
                else set()
            )
            steps = sum(len(train) for train, _ in splits) * epochs
            left = sum(len(tr) for k, (tr, _) in enumerate(splits) if k not in finished) * epochs
            row.status = (
                f"{len(finished)}/{len(splits)} folds done; {steps} training image-steps in all"
            )
            settings = self.fine_settings(ctx, table)
            row.estimate_s = ctx.throughput.estimate(train_key(ctx, cell.backbone, settings), left)
            row.work = f"{left} image-steps" if left else ""
            row.trains = True
            rows.append(row)
        return rows

    # -- run time --------------------------------------------------------------------------
    def jobs(
        self, ctx: RunContext, table: Mapping[str, Any], index: int, seed: int, cells: list[Cell]
    ) -> list[Job]:
        samples = self._samples(ctx, table, seed)
        splits, _ = ctx.splits(samples, table, seed)
        out = []
        for cell in cells:
            ctx.backbone(cell.backbone)  # a backbone that cannot be built fails before any work
            for fold in range(len(splits)):
                out.append(
                    Job(
                        id=f"train|{cell.id}|fold={fold}",
                        protocol=self.name,
                        kind="train",
                        payload={
                            "table": dict(table),
                            "index": index,
                            "seed": seed,
                            "cell": cell.id,
                            "backbone": cell.backbone,
                            "fold": fold,
                        },
                        resources=ctx.network_resources(),
                        cells=(cell.id,),
                        weight=float(len(splits[fold][0])),
                    )
                )
        return out

    def run_job(self, ctx: RunContext, job: Job, inputs: Mapping[str, Any]) -> Any:
        from bench.protocols.finetune.cv import train_context_fold

        p = job.payload
        table, seed = p["table"], p["seed"]
        samples = self._samples(ctx, table, seed)
        splits, _ = ctx.splits(samples, table, seed)
        settings = self.fine_settings(ctx, table)
        result = train_context_fold(
            ctx,
            samples,
            p["backbone"],
            splits,
            p["fold"],
            self.fine_settings(ctx, table),
            workdir_id=p["cell"],
            seed=seed,
        )
        if not result.resumed:
            ctx.throughput.record_rate(train_key(ctx, p["backbone"], settings), result.images_per_s)
        return result

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
        from bench.protocols.cells import base_cell, fold_records
        from bench.results import compact_history
        from bench.units import pooled_units, sample_units

        imageset = ctx.data.imageset
        n_classes, positive = len(imageset.classes), imageset.positive_index
        settings = self.fine_settings(ctx, table)
        samples = self._samples(ctx, table, seed)
        splits, split = ctx.splits(samples, table, seed)
        units, unit = sample_units(samples)  # intervals over source images or patients
        out = []
        for cell in cells:
            folds = [results[f"train|{cell.id}|fold={k}"] for k in range(len(splits))]
            rec = base_cell(
                ctx,
                cell,
                model=self.model,
                label="Fine-tuned",
                samples=samples,
                split=split,
                augmentation=ctx.augmentation_info(
                    table["augment"], table["settings"].get("augmentation", "premade")
                ),
            )
            rec.folds = fold_records(folds, n_classes, positive)
            rec.metrics = summarize(
                folds,
                n_classes=n_classes,
                positive_index=positive,
                seed=seed,
                units=pooled_units(folds, units),
                unit=unit,
            )
            training: dict[str, Any] = {
                "settings": settings.as_dict(),
                "history": compact_history(list(folds[0].history)),
                # the first fold's history is "history"; the others only when there are several
                "fold_histories": (
                    [compact_history(list(r.history)) for r in folds] if len(folds) > 1 else []
                ),
                "val_histories": [list(r.val_history) for r in folds],
                "selected": [r.selected for r in folds],
                "epochs_run": [r.epochs_run for r in folds],
                "images_per_s": [round(float(r.images_per_s), 2) for r in folds],
                "checkpoints": [str(r.best_path) for r in folds],
            }
            rec.sections["training"] = training
            if table["save_model"]:
                models = save_finetuned(ctx, cell, folds)
                training["saved_models"] = [str(ctx.results_dir / m["path"]) for m in models]
                rec.sections["models"] = models
            rec.status = "complete"
            out.append(rec)
        return out

    def row_label(self, cell: CellRecord) -> str:
        kind = cell.split.label.split(" ", 1)[-1]
        return f"fine-tuned {cell.backbone} ({kind})"

    def method_label(self, cell: CellRecord) -> str:
        return "fine-tuned"


def save_finetuned(ctx: RunContext, cell: Cell, folds: list) -> list[dict[str, Any]]:
    """Copy each fold's selected model to ``results/models/<run id>/``; the record's entries."""
    import shutil

    from bench.atomic import atomic_path
    from bench.protocols.cells import model_entry, safe_name

    out_dir = ctx.models_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    for r in folds:
        src = Path(r.best_path if r.selected == "best" else r.last_path)
        dst = (
            out_dir
            / f"{safe_name(cell.backbone)}-finetune-seed{cell.seed}-fold{r.fold}.safetensors"
        )
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        saved.append(model_entry(ctx, dst, int(r.fold)))
        ctx.console.print(f"[dim]saved {dst}[/dim]", soft_wrap=True)
    return saved


def train_key(ctx: RunContext, backbone: str, settings: FinetuneSettings) -> str:
    """Throughput key of fine-tuning: image-steps/s depend on device, batch and precision."""
    from bench.throughput import key_of

    detail = f"batch={settings.batch_size},amp={settings.amp},train={settings.train}"
    return key_of("train", backbone, str(ctx.device), detail)
