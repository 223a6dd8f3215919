"""Digests of the source code that computes a cached result, so a code change misses the cache.

Package versions alone do not move in an editable checkout: a developer who
edits a classifier (or pulls a fix) and reruns would get the old predictions.
:func:`classifier_code` digests the source files of the package that defines
a classifier's factory (every ``.py`` below its top-level package, e.g. all of
``plugins/`` for the builtin ones) together with the cross-validation engine
(:mod:`bench.crossval`, :mod:`bench.fold_fastpath`). Computed once per process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
from functools import lru_cache
from pathlib import Path
from typing import Any

ENGINE_MODULES = ("bench.crossval", "bench.fold_fastpath")


def _files_of(module_name: str) -> list[Path]:
    """The module's file, or every ``.py`` file below its package folder."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        return []
    origin = Path(spec.origin)
    if spec.submodule_search_locations:  # a package: all of its sources
        return sorted(p for loc in spec.submodule_search_locations for p in Path(loc).rglob("*.py"))
    return [origin]


@lru_cache(maxsize=64)
def source_digest(module_names: tuple[str, ...]) -> str:
    """SHA-256 over the relative names and bytes of the modules' source files."""
    h = hashlib.sha256()
    for name in module_names:
        for path in _files_of(name):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            h.update(f"{name}:{path.name}:{len(data)}|".encode())
            h.update(data)
    return h.hexdigest()


def classifier_code(factory: Any) -> str:
    """Digest of the code behind ``factory``'s fits: its top-level package and the CV engine."""
    module = inspect.getmodule(factory)
    top = module.__name__.split(".")[0] if module is not None else ""
    names = (*ENGINE_MODULES, top) if top else ENGINE_MODULES
    return source_digest(tuple(names))
