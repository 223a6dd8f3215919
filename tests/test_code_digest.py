"""Cached Model 1 predictions are keyed by the code that computes them, not only by versions."""

from __future__ import annotations

import importlib
import sys

from bench.code_digest import classifier_code, source_digest
from bench.prediction_cache import prediction_key


def test_an_edited_classifier_module_gets_another_key(tmp_path, monkeypatch):
    pkg = tmp_path / "my_lab_plugin"
    (pkg / "inner").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "inner" / "__init__.py").write_text("")
    (pkg / "inner" / "model.py").write_text("def factory():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("my_lab_plugin.inner.model")
    try:
        before = classifier_code(module.factory)
        assert before == classifier_code(module.factory)  # stable
        key = prediction_key("data", "mine", {}, 1, before)
        assert key != prediction_key("data", "mine", {}, 1)  # the code is part of the key
        (pkg / "inner" / "model.py").write_text("def factory():\n    return 2  # a fix\n")
        source_digest.cache_clear()  # a new process
        after = classifier_code(module.factory)
        assert after != before
        assert prediction_key("data", "mine", {}, 1, after) != key
    finally:
        source_digest.cache_clear()
        for name in [m for m in sys.modules if m.startswith("my_lab_plugin")]:
            del sys.modules[name]


def test_builtin_classifiers_digest_the_plugins_and_the_engine():
    from bench.registry import get_registry

    reg = get_registry()
    lda = classifier_code(reg.classifier("lda").factory)
    assert len(lda) == 64 and lda == classifier_code(reg.classifier("svm-cubic").factory)
