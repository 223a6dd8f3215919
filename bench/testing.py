"""A test kit for plugin authors: does my plugin keep the LeukoBench contract?

Like scikit-learn's ``check_estimator``: each ``check_*`` function runs a list of
small, named checks against one spec and raises :class:`ContractError` (an
``AssertionError``) naming the check that failed and why::

    from bench.testing import check_backbone, check_classifier
    from my_plugin import leukobench_backbones, leukobench_classifiers

    def test_my_backbone():
        check_backbone(leukobench_backbones())

    def test_my_classifier():
        check_classifier(leukobench_classifiers())

:func:`checks_for` returns the individual checks, for ``pytest.mark.parametrize``.
The project's own tests run this kit over every registered plugin.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import UserError
from bench.specs import BackboneSpec, ClassifierSpec, DatasetSpec, ProtocolSpec


class ContractError(AssertionError):
    """A plugin broke the contract: names the spec, the check and what was wrong."""


@dataclass(frozen=True)
class Check:
    """One named check of one spec (``run()`` raises :class:`ContractError`)."""

    spec_name: str
    name: str
    fn: Callable[[], None]

    def run(self) -> None:
        try:
            self.fn()
        except ContractError:
            raise
        except AssertionError as exc:
            raise ContractError(f"{self.spec_name}: {self.name}: {exc}") from exc

    def __repr__(self) -> str:  # readable pytest ids
        return f"{self.spec_name}:{self.name}"


def _ensure(ok: bool, message: str) -> None:
    if not ok:
        raise AssertionError(message)


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Any attempt to open a network connection inside raises :class:`ContractError`."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ContractError(f"tried to open a network connection {args[1:2] or args[:1]}")

    saved = socket.socket.connect, socket.create_connection
    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.create_connection = refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket.connect, socket.create_connection = saved  # type: ignore[method-assign]


# -- backbones -------------------------------------------------------------------------
def _backbone_checks(spec: BackboneSpec, options: dict[str, Any], batch: int) -> list[Check]:
    import torch

    from bench.backbone import Backbone

    built: dict[str, Any] = {}

    def build() -> Backbone:
        if "b" not in built:
            with no_network():
                built["b"] = spec.factory(**options)
        return built["b"]

    def returns_a_backbone() -> None:
        b = build()
        _ensure(isinstance(b, Backbone), f"factory returned {type(b).__name__}, not a Backbone")
        _ensure(b.input_size > 0 and b.feature_dim > 0, "input_size and feature_dim must be > 0")
        _ensure(len(b.mean) == 3 and len(b.std) == 3, "mean and std need 3 values")

    def features_have_the_declared_shape() -> None:
        b = build()
        x = torch.randn(batch, 3, b.input_size, b.input_size)
        with torch.inference_mode():
            out = b.extractor.eval()(x)
        _ensure(tuple(out.shape) == (batch, b.feature_dim), f"got {tuple(out.shape)}")
        _ensure(out.dtype == torch.float32, f"features are {out.dtype}, expected float32")
        _ensure(bool(torch.isfinite(out).all()), "features contain NaN or inf")

    def features_are_deterministic() -> None:
        b = build()
        torch.manual_seed(0)
        x = torch.randn(batch, 3, b.input_size, b.input_size)
        with torch.inference_mode():
            one, two = b.extractor.eval()(x), b.extractor.eval()(x)
        _ensure(torch.equal(one, two), "two forwards of the same batch differ (eval mode?)")

    def finetune_head_has_k_outputs() -> None:
        b = build()
        for k in (2, 3):
            net = b.make_finetune(k)
            x = torch.randn(batch, 3, b.input_size, b.input_size)
            with torch.inference_mode():
                out = net.eval()(x)
            _ensure(tuple(out.shape) == (batch, k), f"make_finetune({k}) gives {tuple(out.shape)}")
            if b.head_module:
                head = net.get_submodule(b.head_module)
                _ensure(head is not None, f"head_module {b.head_module!r} not found")

    def describes_its_weights() -> None:
        b = build()
        info = b.describe()
        for key in ("weights", "pretrained"):
            _ensure(key in info, f"describe() lacks {key!r}")
        _ensure(bool(b.cache_identity()), "cache_identity() is empty")
        _ensure(b.cache_identity() == spec.factory(**options).cache_identity(), "unstable cache id")

    return [
        Check(spec.name, fn.__name__, fn)
        for fn in (
            returns_a_backbone,
            features_have_the_declared_shape,
            features_are_deterministic,
            finetune_head_has_k_outputs,
            describes_its_weights,
        )
    ]


# -- classifiers -----------------------------------------------------------------------
def _toy(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    X = rng.normal(size=(n, d)) + y[:, None] * 1.5
    return X.astype(np.float32), y


def _classifier_checks(spec: ClassifierSpec, options: dict[str, Any]) -> list[Check]:
    from sklearn.base import clone

    def fresh() -> Any:
        return spec.factory(**options)

    def has_the_estimator_api() -> None:
        est = fresh()
        for name in ("fit", "predict", "get_params", "set_params"):
            _ensure(callable(getattr(est, name, None)), f"estimator lacks {name}()")
        _ensure(
            hasattr(est, "predict_proba") or hasattr(est, "decision_function"),
            "needs predict_proba() or decision_function()",
        )
        clone(est)  # parameters round-trip

    def predicts_the_training_labels(k: int = 2) -> None:
        X, y = _toy(60, 8, k, seed=k)
        X_before = X.copy()
        est = fresh().fit(X, y)
        _ensure(np.array_equal(X, X_before), "fit() modified X")
        pred = np.asarray(est.predict(X))
        _ensure(pred.shape == (len(X),), f"predict() shape {pred.shape}")
        _ensure(set(pred.tolist()) <= set(y.tolist()), "predict() returned unknown labels")
        if hasattr(est, "predict_proba"):
            proba = np.asarray(est.predict_proba(X))
            _ensure(proba.shape == (len(X), k), f"predict_proba() shape {proba.shape}")
            _ensure(np.allclose(proba.sum(axis=1), 1, atol=1e-5), "probabilities do not sum to 1")
        else:
            dec = np.asarray(est.decision_function(X))
            want = (len(X),) if k == 2 else (len(X), k)
            _ensure(dec.shape == want, f"decision_function() shape {dec.shape}, expected {want}")

    def handles_three_classes() -> None:
        predicts_the_training_labels(3)

    def is_deterministic() -> None:
        X, y = _toy(50, 6, 2, seed=1)
        a = np.asarray(fresh().fit(X, y).predict(X))
        b = np.asarray(clone(fresh()).fit(X, y).predict(X))
        _ensure(np.array_equal(a, b), "two fits on the same data predict differently")

    def survives_pickling() -> None:
        X, y = _toy(40, 4, 2, seed=2)
        est = fresh().fit(X, y)
        back = pickle.loads(pickle.dumps(est))
        _ensure(np.array_equal(back.predict(X), est.predict(X)), "pickled estimator differs")

    return [
        Check(spec.name, fn.__name__, fn)
        for fn in (
            has_the_estimator_api,
            predicts_the_training_labels,
            handles_three_classes,
            is_deterministic,
            survives_pickling,
        )
    ]


# -- datasets --------------------------------------------------------------------------
def _dataset_checks(spec: DatasetSpec, path: Path | None, options: dict[str, Any]) -> list[Check]:
    from bench.data.imageset import ImageSet

    loaded: dict[str, Any] = {}

    def load() -> ImageSet:
        if "s" not in loaded:
            import PIL.Image

            saved = PIL.Image.open

            def refuse(*args: Any, **kwargs: Any) -> Any:
                raise ContractError("the loader decoded an image (the engine decodes, once)")

            PIL.Image.open = refuse  # type: ignore[assignment]
            try:
                with no_network():
                    loaded["s"] = spec.factory(path, **options)
            finally:
                PIL.Image.open = saved  # type: ignore[assignment]
        return loaded["s"]

    def returns_an_imageset() -> None:
        s = load()
        _ensure(isinstance(s, ImageSet), f"factory returned {type(s).__name__}")
        _ensure(len(s) > 0, "no images")

    def labels_classes_and_groups_agree() -> None:
        s = load()
        labels = np.asarray(s.labels)
        _ensure(labels.dtype.kind in "iu", f"labels are {labels.dtype}, expected integers")
        _ensure(labels.min() >= 0 and labels.max() < len(s.classes), "label out of range")
        _ensure(len(set(s.classes)) == len(s.classes), "class names repeat")
        _ensure(all(isinstance(g, str) for g in s.groups), "groups must be strings")
        _ensure(s.positive is None or s.positive in s.classes, "positive is not a class")

    def paths_exist() -> None:
        missing = [p for p in load().paths if not Path(p).is_file()]
        _ensure(not missing, f"{len(missing)} path(s) do not exist, e.g. {missing[:1]}")

    def bad_path_is_a_user_error() -> None:
        if not spec.needs_path:
            return
        try:
            spec.factory(Path("/nonexistent/leukobench-check"), **options)
        except UserError:
            return
        except Exception as exc:
            raise AssertionError(
                f"a missing path raised {type(exc).__name__}, not UserError"
            ) from exc
        raise AssertionError("a missing path was accepted")

    return [
        Check(spec.name, fn.__name__, fn)
        for fn in (returns_an_imageset, labels_classes_and_groups_agree, paths_exist)
    ] + [Check(spec.name, bad_path_is_a_user_error.__name__, bad_path_is_a_user_error)]


# -- protocols -------------------------------------------------------------------------
def _run_table(spec: ProtocolSpec, table: dict[str, Any], data: dict[str, Any] | None) -> None:
    """Run ``table`` on tiny synthetic data with an executor that pickles every job and result."""
    import tempfile

    from bench.api import load_suite
    from bench.executor import LocalExecutor
    from bench.records import RunRecord
    from bench.runner import run_suite

    class PicklingExecutor(LocalExecutor):
        name = "pickling-check"

        def run(self, ctx, protocol, jobs, on_result=None):  # type: ignore[override]
            def through(job, result, seconds):
                _ensure(pickle.loads(pickle.dumps(job)) == job, f"job {job.id} does not round-trip")
                pickle.dumps(result)  # results travel to other processes too
                if on_result is not None:
                    on_result(job, result, seconds)

            shipped = [pickle.loads(pickle.dumps(j)) for j in jobs]
            return super().run(ctx, protocol, shipped, through)

    suite = load_suite(
        {
            "suite": {"name": f"check-{spec.name}"},
            "data": data or {"dataset": "synthetic", "options": {"n_per_class": 6, "size": 64}},
            "protocol": [{"kind": spec.name, **table}],
        }
    )
    with tempfile.TemporaryDirectory(prefix="leukobench-check-") as tmp:
        raw, path = run_suite(
            suite, results_dir=Path(tmp), progress=False, executor=PicklingExecutor()
        )
        record = RunRecord.from_json(raw, str(path))
        _ensure(record.status == "complete", f"the run ended {record.status}")
        want = {c.id for c in suite.cells()}
        got = {c.id for c in record.cells}
        _ensure(want == got, f"cells {sorted(want ^ got)} planned or assembled but not both")
        for cell in record.cells:
            _ensure(cell.complete, f"cell {cell.id} is {cell.status}")
            _ensure(
                RunRecord.from_json(record.to_json(), "x").to_json() == record.to_json(),
                "the record does not survive its own serialiser",
            )


def _protocol_checks(
    spec: ProtocolSpec, table: dict[str, Any] | None = None, data: dict[str, Any] | None = None
) -> list[Check]:
    from bench.protocols.base import Protocol, check_table

    def factory_returns_the_named_protocol() -> None:
        p = spec.factory()
        _ensure(isinstance(p, Protocol), f"factory returned {type(p).__name__}, not a Protocol")
        _ensure(p.name == spec.name, f"protocol name {p.name!r} != spec name {spec.name!r}")
        _ensure(bool(p.description or spec.description), "no description")

    def every_setting_is_documented_and_valid() -> None:
        p = spec.factory()
        for s in (*p.table_keys, *p.settings):
            _ensure(bool(s.description.strip()), f"setting {s.name!r} has no description")
            if not s.required and s.default is not None:
                s.check(s.default, f"default of {s.name}")
        check_table(p.settings, {}, "defaults") if not any(s.required for s in p.settings) else None

    def unknown_and_non_finite_settings_are_refused() -> None:
        p = spec.factory()
        declared = {s.name for s in p.settings}
        try:
            check_table(p.settings, {"no_such_setting_x": 1}, "t")
        except UserError as exc:
            _ensure("no_such_setting_x" in str(exc), f"error does not name the key: {exc}")
        else:
            raise AssertionError("an unknown setting was accepted")
        for s in p.settings:
            if s.type is float:
                try:
                    s.check(math.nan, "t")
                except UserError:
                    continue
                raise AssertionError(f"setting {s.name!r} accepted NaN")
        _ensure(len(declared) == len(p.settings), "two settings share a name")

    def jobs_are_picklable_values() -> None:
        from bench.protocols.base import Job, Resources

        job = Job("x", spec.name, "check", {"a": 1}, (), Resources())
        _ensure(pickle.loads(pickle.dumps(job)) == job, "Job does not round-trip")

    def runs_with_picklable_jobs_and_results() -> None:
        if table is not None:
            _run_table(spec, table, data)

    return [
        Check(spec.name, fn.__name__, fn)
        for fn in (
            factory_returns_the_named_protocol,
            every_setting_is_documented_and_valid,
            unknown_and_non_finite_settings_are_refused,
            jobs_are_picklable_values,
            runs_with_picklable_jobs_and_results,
        )
    ]


# -- the face --------------------------------------------------------------------------
def _one(spec: Any) -> Any:
    if isinstance(spec, list | tuple):
        if len(spec) != 1:
            raise TypeError("pass one spec (iterate over a hook's list yourself)")
        return spec[0]
    return spec


def checks_for(spec: Any, **kwargs: Any) -> list[Check]:
    """The individual checks for ``spec`` (any spec kind), e.g. for ``pytest.mark.parametrize``."""
    spec = _one(spec)
    if isinstance(spec, BackboneSpec):
        return _backbone_checks(spec, dict(kwargs.get("options") or {}), kwargs.get("batch", 2))
    if isinstance(spec, ClassifierSpec):
        return _classifier_checks(spec, dict(kwargs.get("options") or {}))
    if isinstance(spec, DatasetSpec):
        path = kwargs.get("path")
        return _dataset_checks(spec, Path(path) if path else None, kwargs.get("options") or {})
    if isinstance(spec, ProtocolSpec):
        return _protocol_checks(spec, kwargs.get("table"), kwargs.get("data"))
    raise TypeError(f"not a LeukoBench spec: {type(spec).__name__}")


def _run(checks: list[Check]) -> None:
    for check in checks:
        check.run()


def check_backbone(spec: Any, *, options: dict[str, Any] | None = None, batch: int = 2) -> None:
    """Backbone contract: shapes, float32, determinism, a k-class head, no download."""
    _run(checks_for(spec, options=options, batch=batch))


def check_classifier(spec: Any, *, options: dict[str, Any] | None = None) -> None:
    """Classifier contract: scikit-learn API, labels, probabilities, 3 classes, determinism."""
    _run(checks_for(spec, options=options))


def check_dataset(
    spec: Any, path: Path | str | None = None, *, options: dict[str, Any] | None = None
) -> None:
    """Dataset contract: an ImageSet, consistent labels/groups, no decoding, UserError on bad paths."""
    _run(checks_for(spec, path=path, options=options))


def check_protocol(
    spec: Any, *, table: dict[str, Any] | None = None, data: dict[str, Any] | None = None
) -> None:
    """Protocol contract: named, every setting documented and validated.

    With ``table`` (a ``[[protocol]]`` table without ``kind``), also runs it on tiny
    synthetic data (or ``data``, a ``[data]`` table) through an executor that pickles
    every job and result, and checks the cells planned are the cells assembled.
    """
    _run(checks_for(spec, table=table, data=data))
