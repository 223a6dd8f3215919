"""External test sets: declared in the protocol table, loaded, validated and matched to the
training classes; their features come through the same feature cache as the training set's.

A test set is relabelled into the training set's class space (``classes`` and
``positive`` of the training set), so every prediction, metric and record is in
one label space. Images byte-identical to a training image are left out (they
would be a leak) and counted in the record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.data.imageset import IDENTITY, ImageSet, Samples
from bench.errors import UserError
from bench.protocols.base import REQUIRED, Setting, check_table
from bench.protocols.external.classes import ClassMatch, match_classes

if TYPE_CHECKING:
    from bench.protocols.context import RunContext
    from bench.registry import Registry

__all__ = [
    "TEST_KEYS",
    "TestSet",
    "combined_samples",
    "load_test_set",
    "test_features",
    "validate_test_data",
]

TEST_KEYS = (
    Setting("dataset", str, REQUIRED, "dataset plugin of the test set (imagefolder, c-nmc, ...)"),
    Setting("path", str, None, "its folder or file (relative paths: to the suite file)"),
    Setting("name", str, None, "its name in reports (default: the folder's name)"),
    Setting("options", dict, {}, "options of the dataset plugin (e.g. positive, classes)"),
    Setting(
        "class_map",
        dict,
        {},
        'test class -> training class, e.g. { ALL = "leukemia", hem = "healthy" }',
    ),
    Setting(
        "only_shared",
        bool,
        False,
        "keep only test images whose class (after class_map) is a training class",
    ),
)


def validate_test_data(value: Any, where: str, class_map: Mapping[str, Any]) -> list[dict]:
    """The resolved ``test_data`` list: each entry checked, named, with its class_map."""
    if not isinstance(value, list) or not value:
        raise UserError(
            f'{where}: expected a list of tables, e.g. [{{ dataset = "imagefolder", '
            'path = "...", name = "..." }]'
        )
    out, names = [], set()
    for i, entry in enumerate(value):
        here = f"{where}[{i}]"
        spec = check_table(TEST_KEYS, entry, here)
        for key, target in spec["class_map"].items():
            if not isinstance(target, str):
                raise UserError(f"{here}.class_map.{key}: expected a class name, got {target!r}")
        spec["table_class_map"] = dict(class_map)
        name = spec.get("name") or (
            Path(spec["path"]).name if spec.get("path") else spec["dataset"]
        )
        if name in names:
            raise UserError(f"{here}.name: {name!r} names two test sets; give each its own name")
        names.add(name)
        spec["name"] = name
        out.append(spec)
    return out


@dataclass(frozen=True)
class TestSet:
    """A loaded, validated external test set in the training set's label space."""

    name: str
    imageset: ImageSet  # classes/positive of the training set; labels mapped
    digests: list[str]
    fingerprint: str
    match: ClassMatch
    info: dict[str, Any]

    @property
    def units(self) -> np.ndarray:
        """The independent units of the test set (patients where known, else images)."""
        return np.asarray(self.imageset.groups, dtype=object)


def effective_class_map(spec: Mapping[str, Any], test_classes: Sequence[str]) -> dict[str, str]:
    """The set's own class_map over the table's (entries for classes it lacks are skipped)."""
    shared = {k: v for k, v in (spec.get("table_class_map") or {}).items() if k in test_classes}
    return {**shared, **dict(spec.get("class_map") or {})}


def _resolve_path(ctx: RunContext, path: str | None) -> Path | None:
    if not path:
        return None
    p = Path(path).expanduser()
    return p if p.is_absolute() else ctx.suite.base_dir / p


def load_imageset(registry: Registry, spec: Mapping[str, Any], path: Path | None, where: str):
    """The test set's ImageSet as its dataset plugin gives it (no image is read)."""
    ds = registry.dataset(spec["dataset"])
    if ds.needs_path and path is None:
        raise UserError(f"{where}.path: dataset {ds.name!r} needs a folder or file")
    if path is not None and not path.exists():
        raise UserError(f"{where}.path: {path} does not exist")
    try:
        return ds.factory(path, **spec["options"])
    except TypeError as exc:
        raise UserError(f"{where}.options: bad option(s) for {ds.name!r}: {exc}") from None


def load_test_set(ctx: RunContext, spec: Mapping[str, Any], where: str) -> TestSet:
    """Load, validate (verdicts cached), match classes and relabel one test set (memoised)."""
    from bench.data.validate import validate

    memo = ctx.memo("external.testsets")
    key = (spec["name"], repr(sorted(spec.items(), key=str)))
    if key in memo:
        return memo[key]
    path = _resolve_path(ctx, spec.get("path"))
    raw = load_imageset(ctx.registry, spec, path, where)
    data_cfg = ctx.suite.config["data"]
    checked, report = validate(
        raw,
        skip_bad=data_cfg["skip_bad"],
        max_pixels=data_cfg["max_pixels"],
        cache_dir=ctx.cache.path,
        min_classes=1,  # training classes it lacks are listed as missing
    )
    train = ctx.data.imageset
    match = match_classes(
        list(train.classes),
        list(checked.classes),
        effective_class_map(spec, checked.classes),
        where,
        only_shared=spec["only_shared"],
    )
    keep, labels = match.labels(checked.labels)
    seen = set(ctx.data.digests)
    overlap = [int(i) for i in keep if report.digests[i] in seen]
    if overlap:
        drop = set(overlap)
        mask = np.array([int(i) not in drop for i in keep], dtype=bool)
        keep, labels = keep[mask], labels[mask]
    if len(keep) == 0:
        raise UserError(f"{where}: no test image left after class matching and overlap removal")
    imageset = ImageSet(
        name=spec["name"],
        paths=tuple(checked.paths[i] for i in keep),
        labels=labels.astype(np.int64),
        classes=train.classes,
        groups=tuple(str(checked.groups[i]) for i in keep),
        positive=train.positive,
        root=checked.root,
        meta={"external": True},
    )
    digests = [report.digests[i] for i in keep]
    counts = imageset.class_counts()
    info = {
        "name": spec["name"],
        "plugin": spec["dataset"],
        "path": str(path) if path else None,
        "fingerprint": report.fingerprint,
        "n_images": len(imageset),
        "n_units": len(set(imageset.groups)),
        "classes": list(checked.classes),
        "class_counts": counts,
        "class_map": effective_class_map(spec, checked.classes),
        **match.as_dict(),
        "excluded": [{"path": p, "reason": r} for p, r in report.excluded],
        "overlap_with_training": len(overlap),
        "warnings": list(report.warnings),
    }
    if overlap:
        ctx.console.print(
            f"[yellow]{spec['name']}: {len(overlap)} test image(s) byte-identical to a training "
            "image left out[/yellow]"
        )
    test = TestSet(spec["name"], imageset, digests, report.fingerprint, match, info)
    memo[key] = test
    return test


def test_features(ctx: RunContext, backbone_name: str, test: TestSet) -> np.ndarray:
    """Features of every test image (no augmentation), through the run's feature cache."""
    from bench.extraction import extract_features

    memo = ctx.memo("external.features")
    key = (backbone_name, test.name, test.fingerprint)
    if key not in memo:
        run_cfg = ctx.suite.config["run"]
        result = extract_features(
            Samples.originals(test.imageset),
            ctx.backbone(backbone_name),
            digests=test.digests,
            cache=ctx.feature_cache,
            mask=ctx.mask,
            device=ctx.device,
            batch_size=run_cfg["batch_size"] or None,
            workers=run_cfg["workers"],
            progress=ctx.progress,
            decoded=ctx.decoded,
            decoder=run_cfg["decoder"],
        )
        ctx.console.print(
            f"[dim]{backbone_name} on {test.name}: {len(test.imageset)} images, "
            f"{result.n_cached} from cache, {result.n_computed} computed[/dim]"
        )
        memo[key] = result.features
    return memo[key]


def combined_samples(
    train: Samples, train_digests: list[str], tests: list[TestSet]
) -> tuple[Samples, list[str], np.ndarray, list[np.ndarray]]:
    """One sample set: the training samples, then every test set's images (not augmented).

    Returns the samples, the digests of its images, the training rows and each test
    set's rows: the fine-tuning split is ``(training rows, all test rows)``.
    """
    base = train.imageset
    paths, labels, groups = list(base.paths), list(base.labels), [f"train:{g}" for g in base.groups]
    digests = list(train_digests)
    offsets = []
    for t in tests:
        offsets.append(len(paths))
        paths += list(t.imageset.paths)
        labels += list(t.imageset.labels)
        groups += [f"{t.name}:{g}" for g in t.imageset.groups]
        digests += list(t.digests)
    imageset = ImageSet(
        name=f"{base.name}+external",
        paths=tuple(paths),
        labels=np.asarray(labels, dtype=np.int64),
        classes=base.classes,
        groups=tuple(groups),
        positive=base.positive,
        root=None,
        meta={"external": True},
    )
    source = list(train.source)
    transforms = list(train.transforms)
    rows = []
    for t, off in zip(tests, offsets, strict=True):
        start = len(source)
        source += list(range(off, off + len(t.imageset)))
        transforms += [IDENTITY] * len(t.imageset)
        rows.append(np.arange(start, len(source), dtype=np.int64))
    samples = Samples(imageset, np.asarray(source, dtype=np.int64), tuple(transforms))
    return samples, digests, np.arange(len(train), dtype=np.int64), rows
