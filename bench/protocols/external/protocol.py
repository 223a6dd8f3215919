"""External validation as a protocol: train on the suite's data (all of it), test on other sets.

Jobs per backbone: ``extract`` (training features, the same cache entries as a
``features`` table's), ``extract-test`` per test set, one ``fit`` per classifier
(Model 1: the in-domain grouped CV through the features protocol's cached fits,
then one fit on all the training samples predicting every test set), and with
``finetune = true`` one ``train`` job (Model 2: fine-tune on all the training
samples, predict every test set) plus one ``train-in-domain`` job per fold.
A cell is one (backbone, method, test set); its folds hold the test set's
predictions, its intervals are cluster bootstraps over the test set's units.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.errors import UserError
from bench.protocols.base import REQUIRED, Job, PlanRow, Protocol, Setting
from bench.protocols.external.testsets import (
    combined_samples,
    load_test_set,
    test_features,
    validate_test_data,
)
from bench.protocols.finetune.settings import SETTINGS as FINETUNE_SETTINGS
from bench.protocols.finetune.settings import FinetuneSettings, check_model2_settings
from bench.protocols.tables import AUGMENT, BACKBONES, CLASSIFIERS, FOLDS, SETTINGS, resolve_table
from bench.suite import Cell

if TYPE_CHECKING:
    from bench.protocols.context import RunContext
    from bench.records import CellRecord, RunRecord
    from bench.registry import Registry
    from bench.render import Table

TEST_DATA = Setting(
    "test_data",
    list,
    REQUIRED,
    'external test sets: [{ dataset = "imagefolder", path = "...", name = "..." }, ...] '
    "(each may add options, class_map, only_shared)",
)
CLASS_MAP = Setting(
    "class_map", dict, {}, "test class -> training class for every test set (per set overrides)"
)
FINETUNE = Setting(
    "finetune", bool, False, "also fine-tune each backbone on the training set (Model 2)"
)
IN_DOMAIN = Setting(
    "in_domain", bool, True, "also score each method by grouped k-fold CV on the training set"
)
N_BOOT = Setting(
    "n_boot",
    int,
    1000,
    "cluster-bootstrap replicates for the intervals",
    minimum=0,
    maximum=100_000,
)
FINETUNE_NAME = "finetune"


@dataclass(frozen=True)
class ExternalCell(Cell):
    """A cell of the external protocol: a (backbone, method) tested on one test set."""

    test: str = ""

    @property
    def id(self) -> str:
        return (
            f"{self.kind}|{self.backbone}|{self.classifier}|test={self.test}"
            f"|seed={self.seed}|p{self.protocol_index}"
        )


def _where(index: int) -> str:
    return f"protocol[{index}].test_data"


class ExternalProtocol(Protocol):
    """Train on the suite's dataset, test on other datasets; report the drop from in-domain CV."""

    name = "external"
    model = "External"
    description = (
        "train on the suite's data, test on other datasets (Model 1 and optionally Model 2); "
        "external score with patient/image-level CIs beside the in-domain grouped CV"
    )
    table_keys = (
        BACKBONES,
        CLASSIFIERS,
        TEST_DATA,
        CLASS_MAP,
        FOLDS,
        AUGMENT,
        FINETUNE,
        IN_DOMAIN,
        N_BOOT,
        SETTINGS,
    )
    settings = FINETUNE_SETTINGS

    # -- suite time -----------------------------------------------------------------------
    def validate(self, table: Mapping[str, Any], where: str, registry: Registry | None) -> dict:
        if "holdout" in table:
            raise UserError(f"{where}.holdout: external uses folds for the in-domain score")
        out = resolve_table(self.table_keys, table, where, default_folds=10)
        for s in (CLASS_MAP, FINETUNE, IN_DOMAIN, N_BOOT):
            out.setdefault(s.name, s.default)
        for key, target in out["class_map"].items():
            if not isinstance(target, str):
                raise UserError(f"{where}.class_map.{key}: expected a class name, got {target!r}")
        out["split"] = "grouped"
        if not out["classifiers"] and not out["finetune"]:
            raise UserError(
                f"{where}.classifiers: missing: give classifiers (Model 1) or finetune = true"
            )
        out["test_data"] = validate_test_data(
            out["test_data"], f"{where}.test_data", out["class_map"]
        )
        check_model2_settings(out, where)
        if registry is not None:
            for i, spec in enumerate(out["test_data"]):
                try:
                    registry.dataset(spec["dataset"])
                except UserError as exc:
                    raise UserError(f"{where}.test_data[{i}].dataset: {exc}") from None
        return out

    def methods(self, table: Mapping[str, Any]) -> list[str]:
        return list(table["classifiers"]) + ([FINETUNE_NAME] if table["finetune"] else [])

    def cells(self, table: Mapping[str, Any], index: int, seed: int) -> list[Cell]:
        return [
            ExternalCell(index, self.name, b, m, seed, test=t["name"])
            for b in table["backbones"]
            for m in self.methods(table)
            for t in table["test_data"]
        ]

    def fine_settings(self, ctx: RunContext, table: Mapping[str, Any]) -> FinetuneSettings:
        return FinetuneSettings.from_options({"device": ctx.device, **table["settings"]})

    def _train_samples(self, ctx: RunContext, table: Mapping[str, Any], seed: int, model2: bool):
        if model2 and self.fine_settings(ctx, table).augmentation == "onthefly":
            return ctx.samples(False, seed)
        return ctx.samples(table["augment"], seed)

    def plan(
        self, ctx: RunContext, table: Mapping[str, Any], index: int, seed: int
    ) -> list[PlanRow]:
        from bench.protocols.planning import (
            backbone_plan_row,
            feature_cache_status,
            fit_size_notes,
        )

        samples = ctx.samples(table["augment"], seed)
        matches = {}
        for i, spec in enumerate(table["test_data"]):  # validated as the run will (bad images)
            matches[spec["name"]] = load_test_set(ctx, spec, f"{_where(index)}[{i}]").match
        tests = ", ".join(table_test_names(table))
        rows = []
        for name in table["backbones"]:
            row, backbone = backbone_plan_row(
                ctx,
                protocol=index,
                kind=self.name,
                backbone=name,
                seed=seed,
                what=", ".join(self.methods(table)) + f" -> {tests}",
                split=f"external x{len(matches)}"
                + (f" + grouped {table['folds']}-fold" if table["in_domain"] else ""),
                leaky=False,
                samples=len(samples),
            )
            if backbone is None:
                rows.append(row)
                continue
            bits = []
            if table["classifiers"]:
                features = feature_cache_status(ctx, row, samples, backbone)
                fits = len(table["classifiers"]) * (
                    1 + (table["folds"] if table["in_domain"] else 0)
                )
                bits.append(
                    f"train {features.cached}/{features.total} features cached; {fits} classifier fits; "
                    "test features extracted at run time"
                )
                # the largest fit: every training sample (the external test's model)
                row.notes = fit_size_notes(
                    ctx, table["classifiers"], len(samples), backbone.feature_dim
                )
            if table["finetune"]:
                epochs = self.fine_settings(ctx, table).epochs
                n = len(self._train_samples(ctx, table, seed, True))
                runs = 1 + (table["folds"] if table["in_domain"] else 0)
                # all n samples once, plus (k - 1)/k of them in each of k in-domain folds
                steps = n * epochs * (1 + (table["folds"] - 1 if table["in_domain"] else 0))
                bits.append(f"{runs} fine-tunes, ~{int(steps)} training image-steps")
            row.status = "; ".join(bits)
            rows.append(row)
        return rows

    # -- run time --------------------------------------------------------------------------
    def jobs(
        self, ctx: RunContext, table: Mapping[str, Any], index: int, seed: int, cells: list[Cell]
    ) -> list[Job]:
        for i, spec in enumerate(table["test_data"]):  # classes and images, before any work
            load_test_set(ctx, spec, f"{_where(index)}[{i}]")
        common = {"table": dict(table), "index": index, "seed": seed}
        prefix = f"p{index}|seed={seed}|external"
        out: list[Job] = []
        for b in table["backbones"]:
            mine = [c for c in cells if c.backbone == b]
            if not mine:
                continue
            ctx.backbone(b)
            clfs = [m for m in table["classifiers"] if any(c.classifier == m for c in mine)]
            if clfs:
                extract = Job(
                    f"{prefix}|extract|{b}",
                    self.name,
                    "extract",
                    {**common, "backbone": b},
                    resources=ctx.network_resources(),
                    cells=tuple(c.id for c in mine if c.classifier in clfs),
                )
                tests = [
                    Job(
                        f"{prefix}|extract-test|{b}|{spec['name']}",
                        self.name,
                        "extract-test",
                        {**common, "backbone": b, "test": i},
                        resources=ctx.network_resources(),
                        cells=tuple(
                            c.id for c in mine if c.classifier in clfs and c.test == spec["name"]
                        ),
                    )
                    for i, spec in enumerate(table["test_data"])
                ]
                out += [extract, *tests]
                for clf in clfs:
                    out.append(
                        Job(
                            f"{prefix}|fit|{b}|{clf}",
                            self.name,
                            "fit",
                            {**common, "backbone": b, "classifier": clf, "group": clfs},
                            deps=(extract.id, *(t.id for t in tests)),
                            resources=ctx.fit_resources(),
                            cells=tuple(c.id for c in mine if c.classifier == clf),
                        )
                    )
            if table["finetune"] and any(c.classifier == FINETUNE_NAME for c in mine):
                ft_cells = tuple(c.id for c in mine if c.classifier == FINETUNE_NAME)
                n = len(self._train_samples(ctx, table, seed, True))
                out.append(
                    Job(
                        f"{prefix}|train|{b}",
                        self.name,
                        "train",
                        {**common, "backbone": b},
                        resources=ctx.network_resources(),
                        cells=ft_cells,
                        weight=float(n),
                    )
                )
                if table["in_domain"]:
                    for k in range(table["folds"]):
                        out.append(
                            Job(
                                f"{prefix}|train-in-domain|{b}|fold={k}",
                                self.name,
                                "train-in-domain",
                                {**common, "backbone": b, "fold": k},
                                resources=ctx.network_resources(),
                                cells=ft_cells,
                                weight=float(n),
                            )
                        )
        return out

    def run_job(self, ctx: RunContext, job: Job, inputs: Mapping[str, Any]) -> Any:
        from bench.protocols.external.work import fit_external, train_external, train_in_domain

        p = job.payload
        table, seed, index = p["table"], p["seed"], p["index"]
        if job.kind == "extract":
            return ctx.features(
                p["backbone"], ctx.samples(table["augment"], seed), table["augment"], seed
            )
        if job.kind == "extract-test":
            spec = table["test_data"][p["test"]]
            test = load_test_set(ctx, spec, f"{_where(index)}[{p['test']}]")
            return test_features(ctx, p["backbone"], test)
        tests = [
            load_test_set(ctx, spec, f"{_where(index)}[{i}]")
            for i, spec in enumerate(table["test_data"])
        ]
        if job.kind == "fit":
            return fit_external(ctx, job, inputs, tests)
        settings = self.fine_settings(ctx, table)
        samples = self._train_samples(ctx, table, seed, True)
        if job.kind == "train":
            combo, digests, train_rows, test_rows = combined_samples(
                samples, ctx.data.digests, tests
            )
            return train_external(ctx, job, combo, digests, train_rows, test_rows, settings)
        return train_in_domain(ctx, job, samples, settings)

    def assemble(
        self,
        ctx: RunContext,
        table: Mapping[str, Any],
        index: int,
        seed: int,
        cells: list[Cell],
        results: Mapping[str, Any],
    ) -> list[CellRecord]:
        from bench.protocols.external.records import external_cell

        prefix = f"p{index}|seed={seed}|external"
        tests = {
            spec["name"]: load_test_set(ctx, spec, f"{_where(index)}[{i}]")
            for i, spec in enumerate(table["test_data"])
        }
        out = []
        for cell in cells:
            assert isinstance(cell, ExternalCell)
            if cell.classifier == FINETUNE_NAME:
                result = results[f"{prefix}|train|{cell.backbone}"]
                in_domain = (
                    [
                        results[f"{prefix}|train-in-domain|{cell.backbone}|fold={k}"]
                        for k in range(table["folds"])
                    ]
                    if table["in_domain"]
                    else None
                )
                ext, from_cache = result["tests"][cell.test], None
                label, training = "Fine-tuned", _training(self.fine_settings(ctx, table), result)
                samples = self._train_samples(ctx, table, seed, True)
            else:
                result = results[f"{prefix}|fit|{cell.backbone}|{cell.classifier}"]
                in_domain = result["in_domain"] if table["in_domain"] else None
                ext, from_cache = result["tests"][cell.test], result["from_cache"]
                spec = ctx.registry.classifier(cell.classifier)
                label, training = spec.paper_label or spec.name, None
                samples = ctx.samples(table["augment"], seed)
            out.append(
                external_cell(
                    ctx,
                    table,
                    cell,
                    tests[cell.test],
                    ext,
                    in_domain,
                    samples,
                    label=label,
                    model2=cell.classifier == FINETUNE_NAME,
                    from_cache=from_cache,
                    training=training,
                )
            )
        return out

    def row_label(self, cell: CellRecord) -> str:
        test = (cell.sections.get("external") or {}).get("test", {}).get("name", "?")
        if cell.classifier == FINETUNE_NAME:
            return f"fine-tuned {cell.backbone} -> {test}"
        return f"{cell.backbone} + {cell.label} -> {test}"

    def method_label(self, cell: CellRecord) -> str:
        return "fine-tuned" if cell.classifier == FINETUNE_NAME else cell.label

    def report_tables(self, record: RunRecord, cells: list[CellRecord]) -> list[Table]:
        from bench.protocols.external.records import drop_table

        return [drop_table(record, cells, self)]


def _training(settings: FinetuneSettings, result: Mapping[str, Any]) -> dict[str, Any]:
    """The record's ``training`` section of the fine-tune on all the training samples."""
    from bench.results import compact_history

    r = result["training"]
    return {
        "settings": settings.as_dict(),
        "history": compact_history(list(r.history)),
        "val_history": list(r.val_history),
        "selected": r.selected,
        "epochs_run": r.epochs_run,
        "images_per_s": round(float(r.images_per_s), 2),
        "checkpoints": [str(r.best_path)],
    }


def table_test_names(table: Mapping[str, Any]) -> list[str]:
    """The names of a resolved table's test sets."""
    return [t["name"] for t in table["test_data"]]
