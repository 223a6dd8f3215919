"""The plugin registry: entry points -> named backbones, classifiers and datasets.

Builtin plugins are declared in ``pyproject.toml`` under
``[project.entry-points.leukobench]`` exactly like third-party ones, and are
loaded through the same door. ``LEUKOBENCH_PLUGINS`` (comma-separated
entry-point names) restricts which plugins load; ``LEUKOBENCH_DISABLE_PLUGINS``
removes some.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from bench import hookspecs
from bench.errors import DuplicateNameError, UnknownNameError, UserError
from bench.specs import SPEC_KINDS, BackboneSpec, ClassifierSpec, DatasetSpec

ENTRY_POINT_GROUP = "leukobench"
_SINGULAR = {
    "backbones": "backbone",
    "classifiers": "classifier",
    "datasets": "dataset",
    "protocols": "protocol",
    "executors": "executor",
}


def suggest(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest known names, or ``""``."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def unknown(kind: str, name: str, known: Iterable[str]) -> UnknownNameError:
    """An :class:`UnknownNameError` with close-match suggestions."""
    known = sorted(known)
    hint = suggest(name, known)
    if not hint:
        hint = f" (known: {', '.join(known)})" if known else " (none registered)"
    return UnknownNameError(f"unknown {kind} {name!r}{hint}")


def _invalid(exc: pluggy.PluginValidationError) -> UserError:
    """A pluggy validation error as a one-line UserError naming the plugin."""
    name = getattr(exc.plugin, "__name__", repr(exc.plugin))
    return UserError(f"plugin {name}: {exc}")


def _selected(env_value: str | None) -> set[str] | None:
    if not env_value:
        return None
    return {part.strip() for part in env_value.split(",") if part.strip()}


class Registry:
    """Plugins and the specs they registered, indexed by kind and name."""

    def __init__(self, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self._index: dict[str, dict[str, Any]] | None = None
        if load_entry_points:
            self.load_entry_points()

    # -- loading -----------------------------------------------------------
    def load_entry_points(self) -> None:
        """Register every plugin of the ``leukobench`` entry-point group (pluggy's loader).

        ``LEUKOBENCH_PLUGINS`` / ``LEUKOBENCH_DISABLE_PLUGINS`` block the others /
        those named (pluggy's ``set_blocked``). A hook implementation no hook
        specification knows (a misspelt hook) fails loudly, naming plugin and hook.
        """
        only = _selected(os.environ.get("LEUKOBENCH_PLUGINS"))
        skip = _selected(os.environ.get("LEUKOBENCH_DISABLE_PLUGINS")) or set()
        found = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
        if only is not None:
            missing = only - found
            if missing:
                raise UserError(
                    f"LEUKOBENCH_PLUGINS names unknown plugin(s) {sorted(missing)}; "
                    f"installed: {sorted(found)}"
                )
        for name in sorted(found):
            if ((only is not None and name not in only) or name in skip) and not (
                self.pm.has_plugin(name)
            ):
                self.pm.set_blocked(name)
        try:
            self.pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except pluggy.PluginValidationError as exc:
            raise _invalid(exc) from None
        self.check_pending()
        self._index = None

    def check_pending(self) -> None:
        """Fail (:class:`UserError`, exit 2) on a hook implementation without a specification."""
        for hook_name, caller in sorted(vars(self.pm.hook).items()):
            if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.optionalhook:
                    continue
                plugin = self.pm.get_name(impl.plugin) or repr(impl.plugin)
                known = [n for n in dir(hookspecs) if n.startswith("leukobench_")]
                hint = suggest(hook_name, known) or f" (hooks: {', '.join(known)})"
                raise UserError(f"plugin {plugin!r}: {hook_name!r} is not a LeukoBench hook{hint}")

    def register(self, plugin: object, name: str) -> None:
        """Register a plugin object (module, class or instance) under ``name``."""
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise _invalid(exc) from None
        try:
            self.check_pending()
        except UserError:
            self.pm.unregister(name=name)
            raise
        self._index = None

    def unregister(self, name: str) -> None:
        """Remove the plugin registered under ``name``."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin, name=name)
        self._index = None

    def plugin_names(self) -> list[str]:
        return sorted(n for n, plugin in self.pm.list_name_plugin() if plugin is not None)

    # -- indexing ----------------------------------------------------------
    def _collect(self, kind: str) -> dict[str, Any]:
        hook = getattr(self.pm.hook, f"leukobench_{kind}")
        spec_type = SPEC_KINDS[kind]
        index: dict[str, Any] = {}
        for impl in hook.get_hookimpls():
            plugin_name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
            result = impl.function()
            if result is None:
                continue
            specs = [result] if isinstance(result, spec_type) else list(result)
            for spec in specs:
                if not isinstance(spec, spec_type):
                    raise UserError(
                        f"plugin {plugin_name!r}: leukobench_{kind}() returned "
                        f"{type(spec).__name__}, expected {spec_type.__name__}"
                    )
                if not spec.plugin:
                    object.__setattr__(spec, "plugin", plugin_name)
                if spec.name in index:
                    raise DuplicateNameError(
                        f"{_SINGULAR[kind]} {spec.name!r} is registered twice: by plugin "
                        f"{index[spec.name].plugin!r} and by plugin {plugin_name!r}"
                    )
                index[spec.name] = spec
        return dict(sorted(index.items()))

    def _all(self) -> dict[str, dict[str, Any]]:
        if self._index is None:
            self._index = {kind: self._collect(kind) for kind in SPEC_KINDS}
        return self._index

    @property
    def backbones(self) -> dict[str, BackboneSpec]:
        return self._all()["backbones"]

    @property
    def classifiers(self) -> dict[str, ClassifierSpec]:
        return self._all()["classifiers"]

    @property
    def datasets(self) -> dict[str, DatasetSpec]:
        return self._all()["datasets"]

    @property
    def protocols(self) -> dict[str, Any]:
        return self._all()["protocols"]

    @property
    def executors(self) -> dict[str, Any]:
        return self._all()["executors"]

    # -- look-ups ----------------------------------------------------------
    def backbone(self, name: str) -> tuple[BackboneSpec, dict[str, Any]]:
        """The spec for ``name`` and extra factory options (``model_name`` for families)."""
        specs = self.backbones
        if name in specs and not specs[name].family:
            return specs[name], {}
        family, _, model = name.partition("/")
        if model and family in specs and specs[family].family:
            return specs[family], {"model_name": model}
        known = [n if not s.family else f"{n}/<model>" for n, s in specs.items()]
        raise unknown("backbone", name, known)

    def classifier(self, name: str) -> ClassifierSpec:
        if name not in self.classifiers:
            raise unknown("classifier", name, self.classifiers)
        return self.classifiers[name]

    def dataset(self, name: str) -> DatasetSpec:
        if name not in self.datasets:
            raise unknown("dataset", name, self.datasets)
        return self.datasets[name]

    def protocol(self, name: str) -> Any:
        """The :class:`bench.protocols.base.ProtocolSpec` for the suite ``kind`` ``name``."""
        if name not in self.protocols:
            raise unknown("protocol", name, self.protocols)
        return self.protocols[name]

    def executor(self, name: str) -> Any:
        """The :class:`bench.specs.ExecutorSpec` named ``name`` (``local``, ``ray``, ...)."""
        if name not in self.executors:
            raise unknown("executor", name, self.executors)
        return self.executors[name]

    def build_backbone(self, name: str, **options: Any) -> Any:
        """Build the backbone ``name`` with ``options``."""
        spec, extra = self.backbone(name)
        return spec.factory(**extra, **options)

    def build_classifier(self, name: str, **options: Any) -> Any:
        """A fresh, unfitted estimator for classifier ``name``."""
        spec = self.classifier(name)
        try:
            return spec.factory(**options)
        except TypeError as exc:
            raise UserError(f"classifier {name!r}: bad option(s) {sorted(options)}: {exc}") from exc


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loading entry points on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY


def reset_registry() -> None:
    """Forget the process-wide registry (tests; after changing LEUKOBENCH_PLUGINS)."""
    global _REGISTRY
    _REGISTRY = None
