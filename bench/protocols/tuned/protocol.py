"""Tuned classifiers by nested cross-validation, as a protocol.

Jobs per backbone: ``extract`` (the same features and cache entries as a
``features`` table's) and one ``fit`` per grid classifier; in one process the
first ``fit`` job runs the whole grid of every classifier of the backbone in one
:func:`bench.crossval.cross_validate` call (:mod:`bench.protocols.tuned.nested`),
each candidate's fold predictions cached, so a rerun refits nothing. A cell is
one (backbone, tuned classifier): its folds are the outer folds, each predicted
by the setting the inner CV chose on that fold's training part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bench.errors import UserError
from bench.protocols.base import REQUIRED, Job, PlanRow, Protocol, Setting
from bench.protocols.tables import AUGMENT, BACKBONES, FOLDS, backbone_image_reads, resolve_table
from bench.protocols.tuned.grid import expand_grid
from bench.suite import Cell

if TYPE_CHECKING:
    from bench.protocols.context import RunContext
    from bench.records import CellRecord, RunRecord
    from bench.registry import Registry
    from bench.render import Table

SELECT_METRICS = ("accuracy", "balanced_accuracy", "f1", "mcc", "roc_auc")
GRID = Setting(
    "grid",
    dict,
    REQUIRED,
    'classifier -> option -> values, e.g. { "svm-gaussian" = { C = [0.1, 1, 10] } }',
)
INNER_FOLDS = Setting(
    "inner_folds", int, 5, "k of the inner grouped CV that chooses the setting", minimum=2
)
METRIC = Setting(
    "metric",
    str,
    "accuracy",
    "what the inner CV maximises (mean over inner folds)",
    choices=SELECT_METRICS,
)


class TunedProtocol(Protocol):
    """Nested grouped CV: the inner CV of each outer training part chooses the setting."""

    name = "tuned"
    model = "Model 1"
    description = (
        "classifiers tuned by nested grouped CV over a declared grid (the outer test fold is "
        "never seen while choosing); outer score, the choice per fold and its stability"
    )
    table_keys = (BACKBONES, GRID, FOLDS, INNER_FOLDS, METRIC, AUGMENT)
    settings = ()

    def validate(self, table: Mapping[str, Any], where: str, registry: Registry | None) -> dict:
        if "holdout" in table:
            raise UserError(f"{where}.holdout: nested CV uses folds (outer grouped k-fold)")
        if "classifiers" in table:
            raise UserError(f"{where}.classifiers: a tuned table names its classifiers in grid")
        out = resolve_table(self.table_keys, table, where, default_folds=10)
        for s in (INNER_FOLDS, METRIC):
            out.setdefault(s.name, s.default)
        out["split"] = "grouped"
        grid = expand_grid(out["grid"], {}, f"{where}.grid")
        out["classifiers"] = list(grid)  # so the suite loader checks names and options
        if registry is not None:
            for name, points in grid.items():
                try:
                    registry.classifier(name)
                except UserError as exc:
                    raise UserError(f"{where}.grid.{name}: {exc}") from None
                for p in points:
                    try:
                        registry.build_classifier(name, **p.options)
                    except UserError as exc:
                        raise UserError(f"{where}.grid.{name} ({p.label}): {exc}") from None
        return out

    def image_reads(self, ctx: RunContext, table: Mapping[str, Any]) -> int:
        return backbone_image_reads(ctx, table)

    def cells(self, table: Mapping[str, Any], index: int, seed: int) -> list[Cell]:
        return [
            Cell(index, self.name, b, c, seed) for b in table["backbones"] for c in table["grid"]
        ]

    def grid(self, ctx: RunContext, table: Mapping[str, Any]) -> dict:
        base = {name: ctx.suite.classifier_options(name) for name in table["grid"]}
        return expand_grid(table["grid"], base, "grid")

    def folds(self, ctx: RunContext, table: Mapping[str, Any], seed: int) -> tuple[list, list]:
        """Outer folds and the inner folds of each outer training part (memoised)."""
        from bench.protocols.tuned.nested import inner_splits

        samples = ctx.samples(table["augment"], seed)
        memo = ctx.memo("tuned.folds")
        key = (id(samples), table["folds"], table["inner_folds"], seed)
        if key not in memo:
            outer, _ = ctx.splits(samples, table, seed)
            inner = inner_splits(
                outer, samples.labels, samples.groups, folds=table["inner_folds"], seed=seed
            )
            memo[key] = (outer, inner)
        return memo[key]

    def plan(
        self, ctx: RunContext, table: Mapping[str, Any], index: int, seed: int
    ) -> list[PlanRow]:
        from bench.protocols.planning import (
            backbone_plan_row,
            feature_cache_status,
            fit_size_notes,
        )

        samples = ctx.samples(table["augment"], seed)
        outer, inner = self.folds(ctx, table, seed)
        grid = self.grid(ctx, table)
        n_points = sum(len(v) for v in grid.values())
        n_folds = len(outer) + sum(len(f) for f in inner)
        rows = []
        for name in table["backbones"]:
            row, backbone = backbone_plan_row(
                ctx,
                protocol=index,
                kind=self.name,
                backbone=name,
                seed=seed,
                what=", ".join(f"{c} x{len(p)}" for c, p in grid.items()),
                split=f"grouped {len(outer)}-fold, inner {table['inner_folds']}-fold",
                leaky=False,
                samples=len(samples),
            )
            if backbone is None:
                rows.append(row)
                continue
            features = feature_cache_status(ctx, row, samples, backbone)
            row.status = (
                f"{features.cached}/{features.total} features cached; "
                f"{n_points} candidates x {n_folds} folds = "
                f"{n_points * n_folds} fits on one shared Gram matrix"
            )
            largest = max(len(train) for train, _ in outer)
            row.notes = fit_size_notes(ctx, list(grid), largest, backbone.feature_dim)
            rows.append(row)
        return rows

    def jobs(
        self, ctx: RunContext, table: Mapping[str, Any], index: int, seed: int, cells: list[Cell]
    ) -> list[Job]:
        from bench.protocols.planning import extract_and_fit_jobs

        common = {"table": dict(table), "index": index, "seed": seed}
        out: list[Job] = []
        grid = self.grid(ctx, table)
        for b in table["backbones"]:
            mine = [c for c in cells if c.backbone == b]
            if not mine:
                continue
            ctx.backbone(b)
            out += extract_and_fit_jobs(
                self.name,
                f"p{index}|seed={seed}|tuned|extract|{b}",
                b,
                common,
                mine,
                network=ctx.network_resources(),
                fits=ctx.fit_resources(),
                weight=lambda c: float(len(grid[c.classifier])),
            )
        return out

    def run_job(self, ctx: RunContext, job: Job, inputs: Mapping[str, Any]) -> Any:
        p = job.payload
        table, seed = p["table"], p["seed"]
        samples = ctx.samples(table["augment"], seed)
        if job.kind == "extract":
            return ctx.features(p["backbone"], samples, table["augment"], seed)
        from bench.protocols.planning import memo_fits
        from bench.protocols.tuned.cache import cached_nested

        def fit(names: Sequence[str]) -> Mapping[str, Any]:
            outer, inner = self.folds(ctx, table, seed)
            grid = {n: v for n, v in self.grid(ctx, table).items() if n in names}
            return cached_nested(
                ctx, inputs[job.deps[0]], samples.labels, outer, inner, grid, table["metric"]
            )

        return memo_fits(ctx, job, "tuned.fits", fit)

    def assemble(
        self,
        ctx: RunContext,
        table: Mapping[str, Any],
        index: int,
        seed: int,
        cells: list[Cell],
        results: Mapping[str, Any],
    ) -> list[CellRecord]:
        from bench.protocols.tuned.records import tuned_cell

        return [tuned_cell(ctx, table, cell, results[f"fit|{cell.id}"]) for cell in cells]

    def row_label(self, cell: CellRecord) -> str:
        params = sorted((cell.sections.get("tuning") or {}).get("grid", {}))
        return f"{cell.backbone} + {cell.label}, tuned {', '.join(params) or 'options'} (nested CV)"

    def method_label(self, cell: CellRecord) -> str:
        return f"{cell.label} (tuned)"

    def report_tables(self, record: RunRecord, cells: list[CellRecord]) -> list[Table]:
        from bench.protocols.tuned.records import choices_table, summary_table

        return [summary_table(record, cells, self), choices_table(record, cells, self)]
