"""The plugin registry: entry points, duplicates, suggestions, env filtering."""

from __future__ import annotations

import pytest

from bench.errors import DuplicateNameError, UnknownNameError, UserError
from bench.hookspecs import hookimpl
from bench.registry import Registry, get_registry, reset_registry
from bench.specs import BackboneSpec, ClassifierSpec


class _Dup:
    @hookimpl
    def leukobench_classifiers(self):
        return ClassifierSpec(name="knn1", factory=lambda: None)


class _Family:
    @hookimpl
    def leukobench_backbones(self):
        return [BackboneSpec(name="fam", factory=lambda **kw: kw, family=True)]


def test_builtin_plugins_come_through_entry_points():
    reg = get_registry()
    assert {
        "alexnet",
        "timm",
        "efficientnet_lite",
        "sklearn",
        "xgboost",
        "datasets",
        "synthetic",
    } <= set(reg.plugin_names())
    assert "alexnet" in reg.backbones and "efficientnet_lite0" in reg.backbones
    assert {"dt", "lda", "svm-linear", "svm-gaussian", "svm-cubic", "knn1"} <= set(reg.classifiers)
    assert {"imagefolder", "manifest", "synthetic"} <= set(reg.datasets)
    assert reg.backbones["alexnet"].plugin == "alexnet"


def test_unknown_name_suggests_close_match():
    reg = get_registry()
    with pytest.raises(
        UnknownNameError, match=r"unknown backbone 'alexnt'; did you mean 'alexnet'\?"
    ):
        reg.backbone("alexnt")
    with pytest.raises(UnknownNameError, match="did you mean 'svm-cubic'"):
        reg.classifier("svm-cubc")


def test_duplicate_name_names_both_plugins():
    reg = Registry()
    reg.register(_Dup(), name="dupe-plugin")
    with pytest.raises(
        DuplicateNameError,
        match=r"'knn1' is registered twice: by plugin '\w+' and by plugin 'dupe-plugin'",
    ):
        _ = reg.classifiers
    reg.unregister("dupe-plugin")
    assert "knn1" in reg.classifiers


def test_family_backbone_resolves_model_name():
    reg = Registry(load_entry_points=False)
    reg.register(_Family(), name="fam-plugin")
    spec, extra = reg.backbone("fam/some_model")
    assert spec.name == "fam" and extra == {"model_name": "some_model"}
    assert reg.build_backbone("fam/x", weights="none") == {"model_name": "x", "weights": "none"}
    with pytest.raises(UnknownNameError):
        reg.backbone("fam")


def test_env_restricts_plugins(monkeypatch):
    monkeypatch.setenv("LEUKOBENCH_PLUGINS", "sklearn,synthetic")
    reset_registry()
    reg = get_registry()
    assert reg.plugin_names() == ["sklearn", "synthetic"]
    assert reg.backbones == {}
    monkeypatch.setenv("LEUKOBENCH_PLUGINS", "sklearn,nope")
    with pytest.raises(UserError, match="unknown plugin"):
        Registry()


def test_disable_plugins(monkeypatch):
    monkeypatch.setenv("LEUKOBENCH_DISABLE_PLUGINS", "xgboost")
    assert "xgboost" not in Registry().plugin_names()


def test_hook_returning_wrong_type_is_reported():
    class Bad:
        @hookimpl
        def leukobench_datasets(self):
            return ["not a spec"]

    reg = Registry(load_entry_points=False)
    reg.register(Bad(), name="bad")
    with pytest.raises(UserError, match="plugin 'bad': leukobench_datasets\\(\\) returned str"):
        _ = reg.datasets
