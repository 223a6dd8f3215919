"""Atomic file writes: a temp file in the target folder, fsync, then rename.

A reader sees the old file or the new one, never half of one; an interrupted
write leaves at most a hidden temp file, which is removed. A write that fails
(disk full, read-only folder, a parent that is a file, a name too long) raises
:class:`bench.errors.WriteError` naming the path and the reason
(:func:`write_failure`), so the CLI shows one line and exits 2.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.errors import WriteError
from bench.readable import ERRORS, readable

_HINTS = {
    errno.ENOSPC: "free some disk space or write elsewhere",
    errno.EDQUOT: "free some space (disk quota) or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EACCES: "no permission; choose a folder you can write to",
    errno.EPERM: "not permitted; choose a folder you can write to",
    errno.ENAMETOOLONG: "use a shorter name",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder; give a file name",
}


def write_failure(path: Path | str, exc: OSError) -> WriteError:
    """A :class:`WriteError` for ``exc`` raised while writing ``path``: path, reason, what to do."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    other = os.fsdecode(exc.filename) if exc.filename is not None else None
    if (
        other
        and other != os.fspath(path)
        and not Path(other).name.startswith(f".{Path(path).name}.")
    ):
        reason += f" ({readable(other)})"  # e.g. the parent folder, or a file being read
    hint = _HINTS.get(exc.errno or -1, "")
    return WriteError(f"cannot write {readable(path)}: {reason}" + (f"; {hint}" if hint else ""))


def ensure_dir(path: Path | str, *, target: Path | str | None = None) -> Path:
    """``path`` as an existing folder (created with its parents), else WriteError.

    ``target`` is the file about to be written there (named in the error instead).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        ok = path.is_dir()
    except OSError as exc:
        if exc.filename is None:
            exc.filename = os.fspath(path)
        raise write_failure(target or path, exc) from None
    if not ok:
        raise WriteError(
            f"cannot write {readable(target or path)}: {readable(path)} is a file, not a folder"
        )
    return path


@contextlib.contextmanager
def atomic_path(path: Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp path to write; on success it becomes ``path``.

    With ``overwrite=False`` an existing ``path`` is never replaced
    (:class:`FileExistsError`).
    """
    path = Path(path)
    try:
        is_dir = path.is_dir()
    except OSError as exc:  # e.g. a name too long
        raise write_failure(path, exc) from None
    if is_dir:
        raise WriteError(f"cannot write {readable(path)}: it is a folder; give a file name")
    ensure_dir(path.parent, target=path)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise write_failure(path, exc) from None
    os.close(fd)
    tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a result file is an ordinary file
        try:
            yield tmp
        except FileExistsError:
            raise
        except OSError as exc:  # the caller's write into tmp failed (e.g. disk full)
            raise write_failure(path, exc) from None
        try:
            if overwrite:
                os.replace(tmp, path)
            else:
                os.link(tmp, path)  # fails when path exists
        except FileExistsError:
            raise
        except OSError as exc:
            raise write_failure(path, exc) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (fsynced)."""
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: Path, text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` (UTF-8; undecodable file-name bytes as ``\\xNN``) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8", ERRORS), overwrite=overwrite)
