"""The Python API: what a notebook needs, in a few stable names (re-exported by ``bench``).

    import bench

    suite = bench.load_suite("quickstart", set={"protocol.0.folds": 3})
    result = bench.run(suite, results_dir="results")
    result.table1()            # Table 1 as a list of row dicts
    result.to_pandas()         # ... as a DataFrame (when pandas is installed)

docs/api.md shows every function with snippets that a test runs as written. The
names in ``__all__`` are the stable API; everything else may move.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import UserError
from bench.records import CellRecord, RunRecord, read_run_record

if TYPE_CHECKING:
    from bench.compare import Comparison
    from bench.predict import Prediction
    from bench.registry import Registry
    from bench.suite import Suite

__all__ = [
    "Features",
    "Result",
    "compare_results",
    "extract_features",
    "load_result",
    "load_suite",
    "predict_images",
    "run",
]


def _overrides(raw: dict[str, Any], overrides: Mapping[str, Any] | Sequence[str]) -> None:
    from bench.suite import apply_override, parse_override

    items: Iterable[tuple[list[str], Any]]
    if isinstance(overrides, Mapping):
        items = [([k for k in key.split(".") if k], value) for key, value in overrides.items()]
    else:
        items = [parse_override(text) for text in overrides]
    for keys, value in items:
        apply_override(raw, keys, value)


def load_suite(
    source: str | Path | Mapping[str, Any],
    *,
    set: Mapping[str, Any] | Sequence[str] = (),  # noqa: A002 - mirrors --set
    data: str | Path | None = None,
    registry: Registry | None = None,
) -> Suite:
    """A validated suite from a file, a shipped suite's name, or a dict of TOML tables.

    ``set`` overrides keys like ``--set`` (``{"protocol.0.folds": 3}`` or
    ``["protocol.0.folds=3"]``); ``data`` is ``--data``. Bad keys raise
    :class:`bench.errors.UserError` naming the key, before any image is read.
    """
    from bench.registry import get_registry
    from bench.suite import Suite, locate, validate

    registry = registry or get_registry()
    if isinstance(source, Mapping):
        raw = copy.deepcopy(dict(source))
        where, path, base = "<dict suite>", None, Path.cwd()
        text = json.dumps(raw, sort_keys=True, default=str).encode()
    else:
        path = locate(str(source))
        text = path.read_bytes()
        try:
            raw = tomllib.loads(text.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: not valid TOML ({exc})") from None
        where, base = str(path), path.parent.resolve()
    _overrides(raw, set)
    if data is not None:
        raw.setdefault("data", {})["path"] = str(Path(data).expanduser().resolve())
    if isinstance(source, Mapping):
        raw.setdefault("suite", {}).setdefault("name", "notebook")
    cfg = validate(raw, where, registry)
    return Suite(cfg, path, hashlib.sha256(text).hexdigest(), base)


@dataclass
class Result:
    """A finished run: its typed record (``cells``) and where the record lies."""

    record: RunRecord
    path: Path

    @property
    def cells(self) -> list[CellRecord]:
        return self.record.cells

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def cell(self, backbone: str, classifier: str, seed: int | None = None) -> CellRecord:
        """The one cell of ``backbone`` x ``classifier`` (and ``seed``); KeyError otherwise."""
        found = [
            c
            for c in self.cells
            if c.backbone == backbone
            and c.classifier == classifier
            and (seed is None or c.seed == seed)
        ]
        if len(found) != 1:
            raise KeyError(f"{len(found)} cells match {backbone!r} x {classifier!r} seed {seed}")
        return found[0]

    def models(self, cell: CellRecord | None = None) -> list[Path]:
        """Saved model files (``save_model = true``) of one cell, or of every cell."""
        cells = [cell] if cell is not None else self.cells
        entries = [m for c in cells for m in (c.sections.get("models") or [])]
        return [self.path.parent / m["path"] for m in entries]

    def tables(self, extra: Iterable[str] = ()) -> list[Any]:
        """Table 1 (and the per-class table for multi-class data) as ``bench.render.Table``."""
        from bench.report import table1

        return table1(self.record, extra=tuple(extra))

    def table1(self, extra: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Table 1 as rows of raw values (one dict per method; the JSON output's ``data``)."""
        return [dict(row) for row in self.tables(extra)[0].data]

    def to_pandas(self, extra: Iterable[str] = ()) -> Any:
        """Table 1 as a ``pandas.DataFrame`` (needs pandas: ``pip install pandas``)."""
        try:
            import pandas as pd
        except ImportError:
            raise UserError("to_pandas() needs pandas: pip install pandas") from None
        return pd.DataFrame(self.table1(extra))

    def report(self, fmt: str = "md", extra: Iterable[str] = ()) -> str:
        """Table 1 rendered as text: ``md``, ``csv``, ``latex``, ``html`` or ``json``."""
        from bench.render import render_text

        return render_text(self.tables(extra), fmt)

    def figures(self, out_dir: str | Path) -> list[Path]:
        """Write the run's figures under ``out_dir``; return their paths."""
        from bench.figures import write_figures

        return write_figures(self.record, Path(out_dir))


def load_result(path: str | Path) -> Result:
    """A :class:`Result` from a result record file (checked; RecordError names bad fields)."""
    record = read_run_record(Path(path))
    return Result(record, Path(path))


def run(
    suite: Suite | str | Path | Mapping[str, Any],
    *,
    results_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    executor: str | None = None,
    track: list[str] | None = None,
    tracking_uri: str | None = None,
    registry: Registry | None = None,
) -> Result:
    """Run a suite (a :class:`bench.suite.Suite`, or anything :func:`load_suite` takes)."""
    from bench.registry import get_registry
    from bench.runner import run_suite
    from bench.suite import Suite

    registry = registry or get_registry()
    if not isinstance(suite, Suite):
        suite = load_suite(suite, registry=registry)
    raw, path = run_suite(
        suite,
        registry=registry,
        results_dir=Path(results_dir) if results_dir is not None else None,
        progress=progress,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        executor=executor,
        track=track,
        tracking_uri=tracking_uri,
    )
    return Result(RunRecord.from_json(raw, str(path)), Path(path))


@dataclass
class Features:
    """Feature vectors of a dataset, with what they are (one row per image)."""

    features: np.ndarray
    labels: np.ndarray
    classes: list[str]
    paths: list[str]
    groups: list[str]
    digests: list[str]
    backbone: dict[str, Any] = field(default_factory=dict)
    n_cached: int = 0
    seconds: float = 0.0


def extract_features(
    data: str | Path | None,
    *,
    backbone: str = "efficientnet_lite0",
    dataset: str = "imagefolder",
    backbone_options: Mapping[str, Any] | None = None,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    skip_bad: bool = False,
    registry: Registry | None = None,
) -> Features:
    """Features of every image of ``data`` (a ``dataset`` plugin's input) with ``backbone``.

    Cached by content like every run (``cache_dir`` or ``$LEUKOBENCH_CACHE``).
    """
    from bench.data.imageset import Samples
    from bench.data.validate import validate
    from bench.extraction import extract_features as extract
    from bench.protocols.context import CacheRoot
    from bench.registry import get_registry

    registry = registry or get_registry()
    spec = registry.dataset(dataset)
    if spec.needs_path and data is None:
        raise UserError(f"dataset {dataset!r} needs a folder or file")
    if data is not None and not Path(data).exists():
        raise UserError(f"{data} does not exist")
    root = CacheRoot.default(cache_dir)
    with root.activate():
        imageset = spec.factory(data) if spec.needs_path else spec.factory()
        imageset, report = validate(imageset, skip_bad=skip_bad, min_per_class=1)
        net = registry.build_backbone(backbone, **dict(backbone_options or {}))
        result = extract(
            Samples.originals(imageset),
            net,
            digests=report.digests,
            cache=root.features(),
            device=device,
            progress=False,
        )
    return Features(
        features=result.features,
        labels=np.asarray(imageset.labels, dtype=np.int64),
        classes=list(imageset.classes),
        paths=[imageset.relpath(i) for i in range(len(imageset))],
        groups=list(imageset.groups),
        digests=list(report.digests),
        backbone=net.describe(),
        n_cached=result.n_cached,
        seconds=result.seconds,
    )


def predict_images(
    model: str | Path, images: Iterable[str | Path], *, device: str = "cpu"
) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Diagnose images (files or folders) with a saved model: (predictions, skipped)."""
    from bench.predict import collect_images, load_predictor, predict_paths

    paths, skipped = collect_images([str(i) for i in images])
    predictor = load_predictor(Path(model), device=device)
    preds, problems = predict_paths(predictor, paths)
    return preds, list(skipped) + list(problems)


def compare_results(
    baseline: Result | RunRecord | str | Path,
    candidate: Result | RunRecord | str | Path,
    *,
    metric: str = "accuracy",
    tolerance: float = 0.01,
) -> Comparison:
    """Per-cell differences of ``metric`` between two runs (``.exit_code`` as the gate)."""
    from bench.compare import compare_records

    def typed(x: Result | RunRecord | str | Path) -> RunRecord:
        if isinstance(x, Result):
            return x.record
        if isinstance(x, RunRecord):
            return x
        return read_run_record(Path(x))

    return compare_records(typed(baseline), typed(candidate), metric=metric, tolerance=tolerance)
