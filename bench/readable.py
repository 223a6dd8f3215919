"""File names that are not valid UTF-8, shown readably instead of crashing.

On POSIX, Python decodes such names with ``surrogateescape``: the byte 0xFF
becomes the lone surrogate U+DCFF, which UTF-8 cannot encode, so printing the
name, writing it to a text file or hashing ``name.encode()`` raises
``UnicodeEncodeError``. The error handler :data:`ERRORS` (registered on import)
writes each escaped byte as ``\\xNN`` (and any other unencodable character as a
backslash escape), so such a name prints as ``bad\\xffname.png``.
"""

from __future__ import annotations

import codecs
import os
from typing import Any

ERRORS = "leukobench-readable"


def _escape(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = []
    for ch in exc.object[exc.start : exc.end]:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte escaped by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        else:
            out.append(ch.encode("ascii", "backslashreplace").decode("ascii"))
    return "".join(out), exc.end


codecs.register_error(ERRORS, _escape)


def readable(text: Any) -> str:
    """``text`` (a str, path or bytes) with undecodable bytes written as ``\\xNN``."""
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    text = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
    return text.encode("utf-8", ERRORS).decode("utf-8")


def utf8_bytes(text: str) -> bytes:
    """``text`` as UTF-8, undecodable file-name bytes restored (``surrogateescape``).

    Identical to ``text.encode()`` for every valid UTF-8 string, so digests of
    ordinary names do not change.
    """
    return text.encode("utf-8", "surrogateescape")


def make_streams_readable(*streams: Any) -> None:
    """Let ``streams`` (e.g. stdout, stderr) print any name (:data:`ERRORS` handler)."""
    for stream in streams:
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is None:
            continue
        try:
            reconfigure(errors=ERRORS)
        except (ValueError, OSError, TypeError):  # a closed or unusual stream
            continue
