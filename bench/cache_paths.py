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
_PROCESS: list[Path] = []  # set_cache_root: this process's root, seen from every thread


def default_cache_root() -> Path:
    """``$LEUKOBENCH_CACHE`` or ``~/.cache/leukobench`` (ignores the active run)."""
    env = os.environ.get("LEUKOBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "leukobench"


def cache_root() -> Path:
    """The active run's cache folder, else this process's (a worker's), else the default."""
    active = _ACTIVE.get()
    if active is not None:
        return active
    return _PROCESS[0] if _PROCESS else default_cache_root()


@contextlib.contextmanager
def active_cache_root(path: Path) -> Iterator[Path]:
    """Make ``path`` what :func:`cache_root` answers in this context, until the block ends."""
    token = _ACTIVE.set(Path(path))
    try:
        yield Path(path)
    finally:
        _ACTIVE.reset(token)


def set_cache_root(path: Path | None) -> None:
    """Make ``path`` what :func:`cache_root` answers from now on, in every thread of this
    process (a worker's root; ``None`` forgets it). An active run's root still comes first."""
    _PROCESS.clear()
    if path is not None:
        _PROCESS.append(Path(path))
