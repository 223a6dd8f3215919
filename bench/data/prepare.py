"""A suite's dataset, prepared once per run: loaded, validated, optionally balanced."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.data.imageset import ImageSet
from bench.errors import UserError
from bench.units import dataset_unit_info

if TYPE_CHECKING:
    from bench.registry import Registry
    from bench.suite import Suite


@dataclass(frozen=True)
class PreparedData:
    """The validated (and possibly balanced) dataset of a run, with its report.

    Picklable (an ImageSet holds paths, labels and groups, never pixels), so a
    run context can be shipped to another process with it.
    """

    imageset: ImageSet
    digests: list[str]
    fingerprint: str
    info: dict[str, Any]


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
    if not spec.needs_path and path is not None:
        raise UserError(
            f"suite {suite.name!r}: dataset {spec.name!r} draws its own images and takes no "
            f"path, but got {path}; run a suite for your images instead, e.g. "
            "leukobench run loey2020-grouped --data PATH (leukobench list suites)"
        )
    if path is not None and not path.exists():
        raise UserError(f"dataset path {path} does not exist")
    try:
        return spec.factory(path, **data["options"])
    except TypeError as exc:
        raise UserError(
            f"dataset {spec.name!r}: bad option(s) {sorted(data['options'])}: {exc}"
        ) from None


def min_groups_needed(suite: Suite) -> tuple[int, str]:
    """The fewest images (groups) each class needs for the suite's splits, and which key asks."""
    need, needed_by = 2, ""
    for index, proto in enumerate(suite.protocols):
        folds = int(proto.get("folds", 2))
        if folds > need:
            where = suite.path or f"suite {suite.name!r}"
            need, needed_by = folds, f"{where}: protocol[{index}].folds = {folds}"
    return need, needed_by


def _show_warnings(found: list[str], limit: int = 5) -> None:
    """The validation's warnings (duplicates kept once, ...): a few, then how many more."""
    import warnings

    for text in found[:limit]:
        warnings.warn(f"dataset: {text}", UserWarning, stacklevel=3)
    if len(found) > limit:
        warnings.warn(
            f"dataset: {len(found) - limit} more warning(s); the result record lists all "
            "(dataset.warnings)",
            UserWarning,
            stacklevel=3,
        )


def prepare_data(
    suite: Suite,
    registry: Registry,
    *,
    skip_bad: bool | None = None,
    cache_dir: Path | None = None,
) -> PreparedData:
    """Load, validate (verdicts cached under ``cache_dir``) and optionally balance the dataset."""
    from bench.data.balance import undersample
    from bench.data.validate import validate

    data_cfg = suite.config["data"]
    imageset = load_dataset(suite, registry)
    skip = data_cfg["skip_bad"] if skip_bad is None else skip_bad
    need, needed_by = min_groups_needed(suite)
    imageset, report = validate(
        imageset,
        skip_bad=skip,
        max_pixels=data_cfg["max_pixels"],
        min_per_class=need,
        cache_dir=cache_dir,
        needed_by=needed_by,
    )
    digests = list(report.digests)
    _show_warnings(list(report.warnings))
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
        **dataset_unit_info(imageset),  # "unit"; "groups" (patient ids) when there are patients
        "synthetic": bool(imageset.meta.get("synthetic")),
        "paths": [imageset.relpath(i) for i in range(len(imageset))],
        "excluded": [{"path": p, "reason": r} for p, r in report.excluded],
        "warnings": list(report.warnings),
        "balance": balance,
        "mask": data_cfg["mask"] or None,
    }
    return PreparedData(imageset, digests, report.fingerprint, info)
