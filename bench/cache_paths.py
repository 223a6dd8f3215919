"""The default cache folder, and the one a run in progress has chosen.

A run builds one :class:`bench.protocols.context.CacheRoot` and passes it
explicitly to every cache it opens. :func:`cache_root` is for code that cannot
be handed one — plugins (the synthetic dataset, weight digests) — and answers
with the root of the run in progress in this process
(:meth:`CacheRoot.activate`), else ``$LEUKOBENCH_CACHE``, else
``~/.cache/leukobench``. Nothing here writes ``os.environ``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

_ACTIVE: ContextVar[Path | None] = ContextVar("leukobench_cache_root", default=None)


def default_cache_root() -> Path:
    """``$LEUKOBENCH_CACHE`` or ``~/.cache/leukobench`` (ignores the active run)."""
    env = os.environ.get("LEUKOBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "leukobench"


def cache_root() -> Path:
    """The active run's cache folder, else :func:`default_cache_root`."""
    active = _ACTIVE.get()
    return active if active is not None else default_cache_root()


@contextlib.contextmanager
def active_cache_root(path: Path) -> Iterator[Path]:
    """Make ``path`` what :func:`cache_root` answers in this context, until the block ends."""
    token = _ACTIVE.set(Path(path))
    try:
        yield Path(path)
    finally:
        _ACTIVE.reset(token)


def set_cache_root(path: Path | None) -> None:
    """Make ``path`` what :func:`cache_root` answers from now on (a worker process's root)."""
    _ACTIVE.set(None if path is None else Path(path))
