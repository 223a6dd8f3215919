"""Options and steps shared by several CLI commands (one definition each)."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

    from bench.data.imageset import ImageSet

PIPE_WIDTH = 4096  # "no limit": a pipe or log file has no width to respect

CACHE_DIR_HELP = "feature cache folder (default: $LEUKOBENCH_CACHE or ~/.cache/leukobench)"


def make_console(*, stderr: bool = False) -> Console:
    """A rich Console; when it writes to a pipe or file (not a terminal, no ``$COLUMNS``),
    lines are not wrapped at rich's default 80 columns, so tables keep their natural width."""
    from rich.console import Console

    console = Console(stderr=stderr)
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(stderr=stderr, width=PIPE_WIDTH)


def data_path(text: str) -> str:
    """``--data``'s argparse type: an empty path is refused (it would mean the current folder)."""
    if not str(text).strip():
        raise argparse.ArgumentTypeError("empty path; give the dataset's folder or file")
    return text


def check_output(
    path: Path | str, flag: str = "--out", *, folder: bool = False, probe: bool = True
) -> Path:
    """``path`` if it can be written as a file (or a folder with ``folder=True``), checked
    before any work; UserError naming ``flag``, the path and the reason otherwise.

    Refused: a folder given for a file (or a file for a folder), a parent that is a
    file or a broken link, a name part too long. With ``probe`` the folder is
    created and a temporary file written and removed in it, which also catches
    read-only file systems, ``/proc`` and missing permissions.
    """
    import tempfile

    from bench.atomic import ensure_dir
    from bench.readable import readable

    path = Path(path).expanduser()
    name = readable(path)
    shown = f"{flag} {name}".strip() if len(name) < 120 else f"{flag} {name[:60]}...{name[-20:]}"
    for part in path.parts:
        if len(os.fsencode(part)) > 255:
            raise UserError(f"{shown}: a name in it is too long (more than 255 bytes)")
    try:
        if not folder and path.is_dir():
            raise UserError(f"{shown}: is a folder; give a file name")
        if folder and path.exists() and not path.is_dir():
            raise UserError(f"{shown}: is a file; give a folder")
        parent = path if folder else path.parent
        while not parent.exists() and parent != parent.parent:
            if parent.is_symlink():
                raise UserError(f"{shown}: {readable(parent)} is a broken symbolic link")
            parent = parent.parent
        if not parent.is_dir():
            raise UserError(f"{shown}: {readable(parent)} is a file, not a folder")
        if probe:
            where = ensure_dir(path if folder else path.parent)
            fd, tmp = tempfile.mkstemp(dir=where, prefix=".leukobench-probe-")
            os.close(fd)
            os.unlink(tmp)
    except OSError as exc:
        raise UserError(f"{shown}: cannot write there ({exc.strerror or exc})") from None
    except UserError as exc:
        if str(exc).startswith(shown):
            raise
        raise UserError(f"{shown}: {str(exc).split(': ', 1)[-1]}") from None
    return path


def output_file(text: str) -> Path:
    """argparse ``type=`` for an output file (``--out``): :func:`check_output` before any work."""
    try:
        return check_output(text, "")
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc).lstrip()) from None


def output_folder(text: str) -> Path:
    """argparse ``type=`` for an output folder (``--figures``, ``--results-dir``)."""
    try:
        return check_output(text, "", folder=True)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc).lstrip()) from None


def cache_folder(text: str) -> Path:
    """argparse ``type=`` for ``--cache-dir``: a folder or nothing yet (not created here)."""
    try:
        return check_output(text, "", folder=True, probe=False)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc).lstrip()) from None


def finite_float(text: str) -> float:
    """argparse ``type=`` for a finite number (``nan``/``inf`` refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(flag: str, value: int, lo: int = 1, hi: int = 1 << 20) -> int:
    """``value`` if ``lo <= value <= hi``, else UserError naming ``flag``."""
    if not lo <= value <= hi:
        raise UserError(f"{flag} {value}: out of range; use {lo}..{hi}")
    return value


def add_cache_dir(p: argparse.ArgumentParser) -> None:
    """``--cache-dir PATH``."""
    p.add_argument("--cache-dir", type=cache_folder, help=CACHE_DIR_HELP)


def add_cache_options(p: argparse.ArgumentParser) -> None:
    """``--cache-dir PATH`` and ``--no-cache``."""
    add_cache_dir(p)
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")


def add_skip_bad(p: argparse.ArgumentParser) -> None:
    """``--skip-bad``."""
    p.add_argument(
        "--skip-bad", action="store_true", help="exclude unreadable images instead of stopping"
    )


def add_no_progress(p: argparse.ArgumentParser) -> None:
    """``--no-progress``."""
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_dataset(p: argparse.ArgumentParser) -> None:
    """``--dataset NAME`` (a dataset plugin, default imagefolder)."""
    p.add_argument("--dataset", default="imagefolder", help="dataset plugin (default imagefolder)")


def load_imageset(dataset: str, data: str | Path | None, *, flag: str = "DATA") -> ImageSet:
    """The ImageSet of dataset plugin ``dataset`` at ``data`` (``flag`` names the option)."""
    from bench.registry import get_registry

    spec = get_registry().dataset(dataset)
    if not spec.needs_path:
        return spec.factory()
    if not data:
        raise UserError(f"dataset {dataset!r} needs {flag} (a folder or file)")
    return spec.factory(data)
