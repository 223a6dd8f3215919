"""Learning curves as a protocol: score against the number of training units.

Jobs per backbone: ``extract`` (the same features and cache entries as a
``features`` table's) and one ``fit`` per classifier (every fold x repeat x
fraction in one :func:`bench.crossval.cross_validate` call through the features
protocol's cached fits, so a rerun refits nothing); with ``finetune = true``
one ``train`` job per distinct fit (Model 2, each resumable). A cell is one
(backbone, method); its folds are the largest fraction's first repeat (the
ordinary grouped CV at full size), its ``learning_curve`` section every point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import UserError
from bench.protocols.base import Job, PlanRow, Protocol, Setting
from bench.protocols.finetune.settings import SETTINGS as FINETUNE_SETTINGS
from bench.protocols.finetune.settings import FinetuneSettings, check_model2_settings
from bench.protocols.tables import AUGMENT, BACKBONES, CLASSIFIERS, FOLDS, SETTINGS, resolve_table
from bench.suite import Cell

if TYPE_CHECKING:
    from bench.protocols.context import RunContext
    from bench.protocols.learning_curve.curve import CurvePlan
    from bench.records import CellRecord, RunRecord
    from bench.registry import Registry
    from bench.render import Table

CURVE_METRICS = ("accuracy", "balanced_accuracy", "f1", "mcc", "roc_auc")
FRACTIONS = Setting(
    "fractions",
    list,
    [0.05, 0.1, 0.25, 0.5, 1.0],
    "fractions of each training fold's units (groups) to train on, each in (0, 1]",
    items=float,
)
REPEATS = Setting(
    "repeats", int, 3, "independent subsamples per fold and fraction", minimum=1, maximum=100
)
METRIC = Setting("metric", str, "accuracy", "the curve's score", choices=CURVE_METRICS)
FINETUNE = Setting(
    "finetune", bool, False, "also fine-tune (Model 2) at every point: costly, see the plan"
)
N_BOOT = Setting(
    "n_boot", int, 1000, "cluster-bootstrap replicates per point", minimum=0, maximum=100_000
)
FINETUNE_NAME = "finetune"


class LearningCurveProtocol(Protocol):
    """Grouped k-fold; nested, stratified, grouped subsamples of each training fold."""

    name = "learning-curve"
    model = "Model 1"
    description = (
        "score vs number of training units: grouped k-fold, each training fold subsampled to "
        "nested fractions (stratified, by groups, seeded, repeated); same test folds throughout"
    )
    table_keys = (
        BACKBONES,
        CLASSIFIERS,
        FOLDS,
        AUGMENT,
        FRACTIONS,
        REPEATS,
        METRIC,
        FINETUNE,
        N_BOOT,
        SETTINGS,
    )
    settings = FINETUNE_SETTINGS

    # -- suite time -----------------------------------------------------------------------
    def validate(self, table: Mapping[str, Any], where: str, registry: Registry | None) -> dict:
        if "holdout" in table:
            raise UserError(f"{where}.holdout: a learning curve uses folds (grouped k-fold)")
        out = resolve_table(self.table_keys, table, where, default_folds=5)
        for s in (FRACTIONS, REPEATS, METRIC, FINETUNE, N_BOOT):
            out.setdefault(s.name, s.default)
        out["split"] = "grouped"
        fr = out["fractions"]
        if not fr:
            raise UserError(f"{where}.fractions: give at least one fraction")
        for i, f in enumerate(fr):
            if not 0 < float(f) <= 1:
                raise UserError(
                    f"{where}.fractions[{i}]: {f!r} is out of range (must be in (0, 1])"
                )
        if len(set(map(float, fr))) != len(fr):
            raise UserError(f"{where}.fractions: repeated values {fr!r}")
        out["fractions"] = sorted(float(f) for f in fr)
        if not out["classifiers"] and not out["finetune"]:
            raise UserError(f"{where}.classifiers: missing: give classifiers or finetune = true")
        check_model2_settings(out, where)
        return out

    def methods(self, table: Mapping[str, Any]) -> list[str]:
        return list(table["classifiers"]) + ([FINETUNE_NAME] if table["finetune"] else [])

    def cells(self, table: Mapping[str, Any], index: int, seed: int) -> list[Cell]:
        return [
            Cell(index, self.name, b, m, seed)
            for b in table["backbones"]
            for m in self.methods(table)
        ]

    def fine_settings(self, ctx: RunContext, table: Mapping[str, Any]) -> FinetuneSettings:
        return FinetuneSettings.from_options({"device": ctx.device, **table["settings"]})

    def _samples(self, ctx: RunContext, table: Mapping[str, Any], seed: int, model2: bool = False):
        if model2 and self.fine_settings(ctx, table).augmentation == "onthefly":
            return ctx.samples(False, seed)
        return ctx.samples(table["augment"], seed)

    def curve(
        self, ctx: RunContext, table: Mapping[str, Any], seed: int, model2: bool = False
    ) -> CurvePlan:
        """The (memoised) fits of this table's curve for one seed."""
        from bench.protocols.learning_curve.curve import curve_plan

        samples = self._samples(ctx, table, seed, model2)
        memo = ctx.memo("learning-curve.plans")
        key = (
            id(samples),
            len(samples),
            table["folds"],
            tuple(table["fractions"]),
            table["repeats"],
            seed,
        )
        if key not in memo:
            splits, _ = ctx.splits(samples, table, seed)
            memo[key] = curve_plan(
                splits,
                samples.labels,
                samples.groups,
                table["fractions"],
                repeats=table["repeats"],
                seed=seed,
            )
        return memo[key]

    def plan(
        self, ctx: RunContext, table: Mapping[str, Any], index: int, seed: int
    ) -> list[PlanRow]:
        from bench.protocols.planning import (
            backbone_plan_row,
            feature_cache_status,
            fit_size_notes,
        )

        samples = self._samples(ctx, table, seed)
        curve = self.curve(ctx, table, seed)
        rows = []
        for name in table["backbones"]:
            row, backbone = backbone_plan_row(
                ctx,
                protocol=index,
                kind=self.name,
                backbone=name,
                seed=seed,
                what=", ".join(self.methods(table)),
                split=f"grouped {table['folds']}-fold x {len(table['fractions'])} fractions x {table['repeats']}",
                leaky=False,
                samples=len(samples),
            )
            if backbone is None:
                rows.append(row)
                continue
            bits = []
            if table["classifiers"]:
                features = feature_cache_status(ctx, row, samples, backbone)
                bits.append(
                    f"{features.cached}/{features.total} features cached; {len(curve.fits)} fits per classifier "
                    f"({int(curve.fit_weight())} training rows in all)"
                )
                if curve.fits:
                    largest = max(len(train) for train, _ in curve.fits)
                    row.notes = fit_size_notes(
                        ctx, table["classifiers"], largest, backbone.feature_dim
                    )
            if table["finetune"]:
                ft = self.curve(ctx, table, seed, model2=True)
                done = 0
                workdir = ctx.run_dir(Cell(index, self.name, name, FINETUNE_NAME, seed).id)
                if workdir.exists():
                    done = len(list(workdir.glob("fold-*/result.json")))
                steps = int(ft.fit_weight()) * self.fine_settings(ctx, table).epochs
                bits.append(
                    f"fine-tuning: {done}/{len(ft.fits)} fine-tunes done, {steps} training image-steps in all"
                )
            row.status = "; ".join(bits)
            rows.append(row)
        return rows

    # -- run time --------------------------------------------------------------------------
    def jobs(
        self, ctx: RunContext, table: Mapping[str, Any], index: int, seed: int, cells: list[Cell]
    ) -> list[Job]:
        from bench.protocols.planning import extract_and_fit_jobs

        common = {"table": dict(table), "index": index, "seed": seed}
        prefix = f"p{index}|seed={seed}|learning-curve"
        out: list[Job] = []
        for b in table["backbones"]:
            mine = [c for c in cells if c.backbone == b]
            if not mine:
                continue
            ctx.backbone(b)
            clf_cells = [c for c in mine if c.classifier != FINETUNE_NAME]
            if clf_cells:
                out += extract_and_fit_jobs(
                    self.name,
                    f"{prefix}|extract|{b}",
                    b,
                    common,
                    clf_cells,
                    network=ctx.network_resources(),
                    fits=ctx.fit_resources(),
                    weight=self.curve(ctx, table, seed).fit_weight(),
                )
            for c in mine:
                if c.classifier != FINETUNE_NAME:
                    continue
                ft = self.curve(ctx, table, seed, model2=True)
                for k, (train, _) in enumerate(ft.fits):
                    out.append(
                        Job(
                            f"train|{c.id}|fit={k}",
                            self.name,
                            "train",
                            {**common, "backbone": b, "cell": c.id, "fit": k},
                            resources=ctx.network_resources(),
                            cells=(c.id,),
                            weight=float(len(train)),
                        )
                    )
        return out

    def run_job(self, ctx: RunContext, job: Job, inputs: Mapping[str, Any]) -> Any:
        p = job.payload
        table, seed = p["table"], p["seed"]
        if job.kind == "extract":
            return ctx.features(
                p["backbone"], self._samples(ctx, table, seed), table["augment"], seed
            )
        if job.kind == "train":
            from bench.protocols.finetune.cv import train_context_fold

            samples = self._samples(ctx, table, seed, model2=True)
            ft = self.curve(ctx, table, seed, model2=True)
            return train_context_fold(
                ctx,
                samples,
                p["backbone"],
                ft.fits,
                p["fit"],
                self.fine_settings(ctx, table),
                workdir_id=p["cell"],
                seed=seed,
            )
        from bench.protocols.features.fits import predictions
        from bench.protocols.planning import memo_fits

        def fit(names: Sequence[str]) -> dict[str, Any]:
            samples = self._samples(ctx, table, seed)
            curve = self.curve(ctx, table, seed)
            classifiers = {n: ctx.suite.classifier_options(n) for n in names}
            X = inputs[job.deps[0]]
            preds, cached = predictions(ctx, X, samples.labels, curve.fits, classifiers)
            return {n: {"fits": preds[n], "from_cache": n in cached} for n in names}

        return memo_fits(ctx, job, "learning-curve.fits", fit)

    def assemble(
        self,
        ctx: RunContext,
        table: Mapping[str, Any],
        index: int,
        seed: int,
        cells: list[Cell],
        results: Mapping[str, Any],
    ) -> list[CellRecord]:
        from bench.protocols.learning_curve.records import curve_cell

        out = []
        for cell in cells:
            model2 = cell.classifier == FINETUNE_NAME
            curve = self.curve(ctx, table, seed, model2=model2)
            if model2:
                fits = [results[f"train|{cell.id}|fit={k}"] for k in range(len(curve.fits))]
                from_cache, label = None, "Fine-tuned"
            else:
                r = results[f"fit|{cell.id}"]
                fits, from_cache = r["fits"], r["from_cache"]
                spec = ctx.registry.classifier(cell.classifier)
                label = spec.paper_label or spec.name
            out.append(
                curve_cell(
                    ctx,
                    table,
                    cell,
                    curve,
                    fits,
                    self._samples(ctx, table, seed, model2),
                    label=label,
                    from_cache=from_cache,
                    model2=model2,
                )
            )
        return out

    def row_label(self, cell: CellRecord) -> str:
        top = max((cell.sections.get("learning_curve") or {}).get("fractions") or [1.0])
        what = (
            f"fine-tuned {cell.backbone}"
            if cell.classifier == FINETUNE_NAME
            else f"{cell.backbone} + {cell.label}"
        )
        return f"{what} (learning curve, {top:.0%} of training units)"

    def method_label(self, cell: CellRecord) -> str:
        top = max((cell.sections.get("learning_curve") or {}).get("fractions") or [1.0])
        base = "fine-tuned" if cell.classifier == FINETUNE_NAME else cell.label
        return f"{base} (learning curve, {top:.0%})"

    def report_tables(self, record: RunRecord, cells: list[CellRecord]) -> list[Table]:
        from bench.protocols.learning_curve.records import curve_table

        return [curve_table(record, cells, self)]

    def figures(self, record: RunRecord, cells: list[CellRecord], out_dir: Path) -> list[Path]:
        from bench.protocols.learning_curve.figure import curve_figure

        return [curve_figure(record, cells, self, out_dir)]
