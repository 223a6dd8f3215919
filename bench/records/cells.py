"""Cell and fold records (one row of Table 1, and its folds' stored predictions)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.errors import UserError


class RecordError(UserError):
    """A stored record that does not match the schema (names the file and the field)."""


def _need(d: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise RecordError(f"{where}: missing field {key!r}")
    value = d[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types)):
        raise RecordError(
            f"{where}.{key}: expected {_names(types)}, got {type(value).__name__} {value!r:.60}"
        )
    return value


def _opt(
    d: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str, default: Any = None
) -> Any:
    if d.get(key) is None:
        return default
    return _need(d, key, types, where)


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _names(types: type | tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in _tuple(types))


@dataclass
class SplitInfo:
    """How a cell's samples were split: kind, folds or hold-out fraction, leakiness."""

    kind: str
    folds: int | None = None
    holdout: float | None = None
    leaky: bool = False

    @property
    def label(self) -> str:
        """``'grouped 10-fold'``, ``'paper-leaky hold-out 80/20'``, ... (the folds used)."""
        prefix = self.kind.replace("-kfold", "").replace("-holdout", "")
        if self.holdout or self.kind.endswith("holdout"):
            test = float(self.holdout) if self.holdout else 0.2
            test = test / 100 if test > 1 else test
            train = round(100 * (1 - test))
            return f"{prefix} hold-out {train}/{100 - train}"
        return f"{prefix} {self.folds}-fold" if self.folds else prefix

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "folds": self.folds,
            "holdout": self.holdout,
            "leaky": self.leaky,
        }

    @classmethod
    def from_json(cls, d: Any, where: str) -> SplitInfo:
        if not isinstance(d, Mapping):
            raise RecordError(f"{where}: expected an object")
        kind = str(_opt(d, "kind", str, where, "?"))
        return cls(
            kind=kind,
            folds=_opt(d, "folds", int, where),
            holdout=_opt(d, "holdout", (int, float), where),
            leaky=bool(_opt(d, "leaky", bool, where, False)) or kind == "paper-leaky",
        )


@dataclass
class SampleRef:
    """Which image each sample came from (``source``) and its transforms' table entry."""

    source: list[int]
    transforms: str = "identity"

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "transforms": self.transforms}

    @classmethod
    def from_json(cls, d: Any, where: str) -> SampleRef:
        if not isinstance(d, Mapping):
            raise RecordError(f"{where}: expected an object")
        return cls(
            source=list(_opt(d, "source", list, where, [])),
            transforms=str(_opt(d, "transforms", str, where, "identity")),
        )


@dataclass
class FoldRecord:
    """One fold's test predictions and metrics (indices refer to the cell's samples)."""

    fold: int
    test_index: list[int]
    y_true: list[int]
    y_pred: list[int]
    score: list[Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    fit_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "fold": self.fold,
            "test_index": self.test_index,
            "y_true": self.y_true,
            "y_pred": self.y_pred,
            "score": self.score,
            "metrics": self.metrics,
            "fit_s": self.fit_s,
        }

    @classmethod
    def from_json(cls, d: Any, where: str) -> FoldRecord:
        if not isinstance(d, Mapping):
            raise RecordError(f"{where}: expected an object")
        fold = cls(
            fold=int(_need(d, "fold", int, where)),
            test_index=list(_need(d, "test_index", list, where)),
            y_true=list(_need(d, "y_true", list, where)),
            y_pred=list(_need(d, "y_pred", list, where)),
            score=_opt(d, "score", list, where),
            metrics=dict(_opt(d, "metrics", dict, where, {})),
            fit_s=float(_opt(d, "fit_s", (int, float), where, 0.0)),
        )
        if not (len(fold.y_true) == len(fold.y_pred) == len(fold.test_index)):
            raise RecordError(f"{where}: test_index, y_true and y_pred differ in length")
        return fold


# Keys of a cell, in the order they are written; anything else is a protocol section.
_CELL_KEYS = (
    "id",
    "status",
    "error",
    "protocol",
    "model",
    "backbone",
    "backbone_info",
    "classifier",
    "classifier_options",
    "label",
    "seed",
    "split",
    "augmentation",
    "classes",
    "positive",
    "samples",
    "predictions_from_cache",
    "folds",
    "metrics",
)


@dataclass
class CellRecord:
    """One cell: a protocol x backbone x classifier x seed, with its folds and metrics.

    ``sections`` holds protocol-specific parts (``training`` for fine-tuning, ...),
    written after the standard keys in insertion order.
    """

    id: str
    protocol: str
    backbone: str
    classifier: str
    seed: int
    status: str = "running"
    model: str = "Model 1"
    label: str = ""
    backbone_info: dict[str, Any] = field(default_factory=dict)
    classifier_options: dict[str, Any] = field(default_factory=dict)
    split: SplitInfo = field(default_factory=lambda: SplitInfo("?"))
    augmentation: dict[str, Any] | None = None
    classes: list[str] = field(default_factory=list)
    positive: str | None = None
    samples: SampleRef = field(default_factory=lambda: SampleRef([]))
    folds: list[FoldRecord] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    predictions_from_cache: bool | None = None
    error: str | None = None
    sections: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Finished, with stored fold predictions."""
        return self.status == "complete" and bool(self.folds)

    @property
    def leaky(self) -> bool:
        return self.split.leaky

    @property
    def pretrained(self) -> bool:
        return self.backbone_info.get("pretrained") is not False

    @property
    def positive_index(self) -> int | None:
        if self.positive is None or self.positive not in self.classes:
            return None
        return self.classes.index(self.positive)

    @property
    def training(self) -> dict[str, Any] | None:
        """The fine-tuning section, when there is one."""
        return self.sections.get("training")

    def to_json(self) -> dict[str, Any]:
        """The cell as stored in ``leukobench.result/1`` (same keys, same order)."""
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
        }
        if self.error is not None:
            out["error"] = self.error
        out.update(
            {
                "protocol": self.protocol,
                "model": self.model,
                "backbone": self.backbone,
                "backbone_info": self.backbone_info,
                "classifier": self.classifier,
                "classifier_options": self.classifier_options,
                "label": self.label,
                "seed": self.seed,
                "split": self.split.to_json(),
                "augmentation": self.augmentation,
                "classes": self.classes,
                "positive": self.positive,
                "samples": self.samples.to_json(),
            }
        )
        if self.predictions_from_cache is not None:
            out["predictions_from_cache"] = self.predictions_from_cache
        out["folds"] = [f.to_json() for f in self.folds]
        out["metrics"] = self.metrics
        out.update(self.sections)
        return out

    @classmethod
    def from_json(cls, d: Any, where: str) -> CellRecord:
        """Read a stored cell; :class:`RecordError` names ``where`` and the bad field."""
        if not isinstance(d, Mapping):
            raise RecordError(f"{where}: expected an object, got {type(d).__name__}")
        folds = _opt(d, "folds", list, where, [])
        classes = _opt(d, "classes", list, where, [])
        for i, name in enumerate(classes):
            if not isinstance(name, str):
                raise RecordError(f"{where}.classes[{i}]: expected str, got {name!r:.60}")
        return cls(
            id=str(_opt(d, "id", str, where, "")),
            status=str(_opt(d, "status", str, where, "complete")),
            error=_opt(d, "error", str, where),
            protocol=str(_opt(d, "protocol", str, where, "features")),
            model=str(_opt(d, "model", str, where, "Model 1")),
            backbone=str(_opt(d, "backbone", str, where, "?")),
            backbone_info=dict(_opt(d, "backbone_info", dict, where, {})),
            classifier=str(_opt(d, "classifier", str, where, "?")),
            classifier_options=dict(_opt(d, "classifier_options", dict, where, {})),
            label=str(_opt(d, "label", str, where, "") or d.get("classifier") or "?"),
            seed=int(_opt(d, "seed", int, where, 0)),
            split=SplitInfo.from_json(d.get("split") or {}, f"{where}.split"),
            augmentation=_opt(d, "augmentation", dict, where),
            classes=list(classes),
            positive=_opt(d, "positive", str, where),
            samples=SampleRef.from_json(d.get("samples") or {}, f"{where}.samples"),
            folds=[FoldRecord.from_json(f, f"{where}.folds[{i}]") for i, f in enumerate(folds)],
            metrics=dict(_opt(d, "metrics", dict, where, {})),
            predictions_from_cache=_opt(d, "predictions_from_cache", bool, where),
            sections={k: v for k, v in d.items() if k not in _CELL_KEYS},
        )
