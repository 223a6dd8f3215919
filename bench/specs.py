"""Typed, frozen records that plugins return from their hooks.

A plugin never hands the engine a bare function: it hands a *spec* that names
the thing, says what it is and how to build it. The registry indexes specs by
``name`` and refuses duplicates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BackboneSpec:
    """A pretrained network that turns images into feature vectors.

    ``factory(**options)`` returns a :class:`bench.backbone.Backbone`.
    A *family* spec (``family=True``) serves every name ``<name>/<model>``;
    its factory is called with ``model_name=<model>`` (e.g. ``timm/resnet18``).
    ``input_size`` and ``feature_dim`` are informative (``None`` = depends on options).
    ``validate(options)`` (optional) checks the options a factory would get (with
    ``model_name`` for a family) cheaply -- names, layers, weight files; nothing is
    built or loaded -- and raises :class:`bench.errors.UserError`; suites call it
    before any work.
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""
    input_size: int | None = None
    feature_dim: int | None = None
    weight_source: str = ""
    licence: str = ""
    family: bool = False
    plugin: str = ""
    validate: Callable[[dict[str, Any]], None] | None = None


@dataclass(frozen=True)
class ClassifierSpec:
    """A classical classifier for feature vectors.

    ``factory(**options)`` returns an unfitted scikit-learn compatible
    estimator (``fit``, ``predict`` and ``predict_proba`` or
    ``decision_function``). ``paper_label`` is the row name in Table 1.
    ``approximates`` names the exact classifier this one approximates (empty:
    exact); its label should say so (the builtin ones carry "≈").
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""
    paper_label: str = ""
    in_paper: bool = False
    plugin: str = ""
    approximates: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """A way to turn a location (and options) into an :class:`bench.data.ImageSet`.

    ``factory(path, **options)`` returns the ImageSet; ``needs_path`` says
    whether ``path`` is required (the synthetic dataset needs none).
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""
    needs_path: bool = True
    options: dict[str, str] = field(default_factory=dict)
    plugin: str = ""


@dataclass(frozen=True)
class ProtocolSpec:
    """A protocol (the suite's ``kind``) a plugin provides.

    ``factory()`` returns a :class:`bench.protocols.base.Protocol`; ``name`` must
    equal the protocol's ``name``.
    """

    name: str
    factory: Callable[[], Any]
    description: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class ExecutorSpec:
    """An executor (what runs a run's jobs) a plugin provides.

    ``factory(**options)`` returns a :class:`bench.executor.Executor`; options come
    from the suite's ``[run]`` table and the command line (e.g. ``address``).
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class TrackerSpec:
    """An experiment tracker (MLflow, TensorBoard, ...) a plugin provides.

    ``factory(**options)`` returns a :class:`bench.tracking.Tracker`; options are
    ``uri`` (``--tracking-uri`` / ``[run] tracking_uri``) and ``experiment``. A
    factory whose package is missing raises :class:`bench.errors.UserError`
    naming the extra to install.
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""
    plugin: str = ""


SPEC_KINDS: dict[str, type] = {
    "backbones": BackboneSpec,
    "classifiers": ClassifierSpec,
    "datasets": DatasetSpec,
    "protocols": ProtocolSpec,
    "executors": ExecutorSpec,
    "trackers": TrackerSpec,
}
