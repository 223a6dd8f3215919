"""Atomic file writes: a temp file in the target folder, fsync, then rename.

A reader sees the old file or the new one, never half of one; an interrupted
write leaves at most a hidden temp file, which is removed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp path to write; on success it becomes ``path``.

    With ``overwrite=False`` an existing ``path`` is never replaced
    (:class:`FileExistsError`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a result file is an ordinary file
    try:
        yield tmp
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails when path exists
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: Path, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (fsynced)."""
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: Path, text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)
