"""Dataset loaders: folders, manifests and known dataset layouts -> ImageSet.

Loaders only list files and labels; they never decode images (validation and
decoding happen later, once, in :mod:`bench.data.validate` and
:mod:`bench.data.decode`). Every mistake a user can make raises
:class:`bench.errors.UserError` naming the path or option.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.cache_paths import cache_root  # noqa: F401  (re-exported for plugins)
from bench.data.imageset import ImageSet, default_positive
from bench.errors import UserError
from bench.readable import readable

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
_IGNORED_DIRS = frozenset({"__MACOSX", "@eaDir"})


# -- helpers ---------------------------------------------------------------------------


def is_image_file(path: Path) -> bool:
    """True for a visible file with an image extension (any case)."""
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted; hidden files/folders skipped.

    Symbolic links to folders are followed (each folder once). A folder that
    cannot be read (permission, a broken link, a symbolic-link loop) is a
    UserError naming it -- never silently left out. (Unreadable entries with an
    image name are listed, so validation reports them as bad images.)
    """
    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: dict[tuple[int, int], Path] = {}

    def onerror(exc: OSError) -> None:
        problems.append((exc.filename or str(folder), exc.strerror or str(exc)))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=onerror, followlinks=True):
        here = Path(dirpath)
        try:
            st = here.stat()
        except OSError as exc:
            problems.append((dirpath, exc.strerror or str(exc)))
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            problems.append(
                (dirpath, f"symbolic link loop (the same folder as {seen[st.st_dev, st.st_ino]})")
            )
            dirnames[:] = []
            continue
        seen[st.st_dev, st.st_ino] = here
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and d not in _IGNORED_DIRS
        )
        for f in filenames:
            if is_image_file(Path(f)):
                found.append(here / f)
            elif not f.startswith(".") and not os.path.exists(here / f):
                reason = "broken symbolic link" if os.path.islink(here / f) else "unreadable"
                try:
                    os.stat(here / f)
                except OSError as exc:
                    reason = exc.strerror or reason
                problems.append((str(here / f), reason))
    if problems:
        shown = "; ".join(f"{readable(p)}: {r}" for p, r in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise UserError(
            f"cannot read {len(problems)} entr{'y' if len(problems) == 1 else 'ies'} under "
            f"{readable(folder)}: {shown}{more}; fix or remove them"
        )
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def require_dir(path: str | Path | None, dataset: str) -> Path:
    """``path`` as an existing folder, or a UserError naming it."""
    if path is None or str(path) == "":
        raise UserError(f"dataset {dataset!r} needs a path (the dataset folder)")
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"dataset {dataset!r}: folder not found: {p}")
    if not p.is_dir():
        raise UserError(f"dataset {dataset!r}: {p} is not a folder")
    return p


def check_options(dataset: str, opts: dict[str, Any], known: Iterable[str]) -> None:
    """UserError naming any option a loader does not understand (and the closest known one)."""
    known = sorted(known)
    bad = sorted(set(opts) - set(known))
    if bad:
        close = [m for b in bad for m in difflib.get_close_matches(b, known, n=1, cutoff=0.6)]
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise UserError(
            f"dataset {dataset!r}: unknown option(s) {', '.join(map(repr, bad))}{hint} "
            f"(known: {', '.join(known) or 'none'})"
        )


def _as_name_list(value: Any, option: str, dataset: str) -> list[str]:
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, Sequence):
        names = [str(v) for v in value]
    else:
        raise UserError(
            f"dataset {dataset!r}: option {option!r} must be a list of class names, got {value!r}"
        )
    if not names or len(set(names)) != len(names):
        raise UserError(
            f"dataset {dataset!r}: option {option!r} must list distinct class names, got {value!r}"
        )
    return names


def resolve_positive(classes: Sequence[str], positive: str | None, dataset: str) -> str | None:
    """The positive class: the user's choice (checked) or :func:`default_positive`."""
    if positive is None or positive == "":
        return default_positive(tuple(classes))
    if positive not in classes:
        raise UserError(
            f"dataset {dataset!r}: option 'positive' = {positive!r} is not a class; "
            f"classes: {', '.join(classes)}"
        )
    return positive


def build_imageset(
    name: str,
    root: Path,
    items: list[tuple[Path, str, str]],
    *,
    dataset: str,
    classes: Any = None,
    positive: str | None = None,
    meta: dict[str, Any] | None = None,
) -> ImageSet:
    """An ImageSet from ``(path, class name, group)`` items.

    Class order is sorted by name unless ``classes`` selects and orders a subset.
    """
    found = sorted({c for _, c, _ in items})
    if classes is not None:
        order = _as_name_list(classes, "classes", dataset)
        missing = [c for c in order if c not in found]
        if missing:
            raise UserError(
                f"dataset {dataset!r}: option 'classes' names {missing} with no images under "
                f"{root}; found: {', '.join(found) or 'none'}"
            )
        items = [it for it in items if it[1] in order]
    else:
        order = found
    if not items:
        raise UserError(f"dataset {dataset!r}: no images found under {root}")
    index = {c: i for i, c in enumerate(order)}
    items = sorted(items, key=lambda it: (index[it[1]], it[0].as_posix()))
    return ImageSet(
        name=name,
        paths=tuple(p for p, _, _ in items),
        labels=np.asarray([index[c] for _, c, _ in items], dtype=np.int64),
        classes=tuple(order),
        groups=tuple(g for _, _, g in items),
        positive=resolve_positive(order, positive, dataset),
        root=root,
        meta={"loader": dataset, "path": str(root), **(meta or {})},
    )


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _patient_ids_from_labels_csv(root: Path) -> dict[str, str]:
    """``relpath -> patient_id`` from ``root/labels.csv`` when it has such a column."""
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        return {}
    with _csv_errors(csv_path), open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        if "patient_id" not in fields or "path" not in fields:
            return {}
        return {
            Path(row["path"]).as_posix(): row["patient_id"].strip()
            for row in reader
            if row.get("path") and (row.get("patient_id") or "").strip()
        }


@contextlib.contextmanager
def _csv_errors(csv_path: Path) -> Iterator[None]:
    """A CSV that is not UTF-8 text or not CSV -> UserError naming it."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{readable(csv_path)}: not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV"
        ) from None
    except csv.Error as exc:
        raise UserError(f"{readable(csv_path)}: not a readable CSV file ({exc})") from None


# -- imagefolder -----------------------------------------------------------------------


def load_imagefolder(
    path: str | Path | None,
    *,
    positive: str | None = None,
    classes: Any = None,
    dataset: str = "imagefolder",
    **opts: Any,
) -> ImageSet:
    """``root/<class>/...`` (nested folders allowed) -> ImageSet.

    Groups are ``patient_id`` from ``root/labels.csv`` when present, else each
    image's relative path. Images directly under ``root`` and class folders
    without images are ignored (listed in ``meta``).
    """
    check_options(dataset, opts, ("positive", "classes"))
    root = require_dir(path, dataset)
    patients = _patient_ids_from_labels_csv(root)
    items: list[tuple[Path, str, str]] = []
    empty: list[str] = []
    for sub in sorted(root.iterdir()):
        if sub.name.startswith(".") or sub.name in _IGNORED_DIRS:
            continue
        if sub.is_symlink() and not sub.exists():
            raise UserError(
                f"dataset {dataset!r}: {readable(sub)} is a broken symbolic link "
                "(or a symbolic-link loop); fix or remove it"
            )
        if not sub.is_dir():
            continue
        files = list_images(sub)
        if not files:
            empty.append(sub.name)
        for p in files:
            rel = _rel(p, root)
            items.append((p, sub.name, patients.get(rel, rel)))
    loose = [p.name for p in root.iterdir() if p.is_file() and is_image_file(p)]
    if not items:
        raise UserError(
            f"dataset {dataset!r}: no class folders with images under {root} "
            "(expected root/<class>/<image>)"
        )
    meta: dict[str, Any] = {"groups": "patient_id" if patients else "image"}
    if empty:
        meta["ignored_folders"] = empty
    if loose:
        meta["ignored_loose_files"] = len(loose)
    return build_imageset(
        root.name, root, items, dataset=dataset, classes=classes, positive=positive, meta=meta
    )


# -- manifest --------------------------------------------------------------------------


def load_manifest(
    path: str | Path | None,
    *,
    positive: str | None = None,
    classes: Any = None,
    **opts: Any,
) -> ImageSet:
    """A CSV with columns ``path,label[,group]`` (paths relative to the CSV) -> ImageSet."""
    dataset = "manifest"
    check_options(dataset, opts, ("positive", "classes"))
    if path is None or str(path) == "":
        raise UserError("dataset 'manifest' needs a path (the CSV file)")
    csv_path = Path(path).expanduser()
    if csv_path.is_dir():
        candidates = sorted(csv_path.glob("*.csv"))
        if len(candidates) != 1:
            raise UserError(f"dataset 'manifest': {csv_path} is a folder; give the CSV file itself")
        csv_path = candidates[0]
    if not csv_path.is_file():
        raise UserError(f"dataset 'manifest': CSV not found: {csv_path}")
    base = csv_path.parent
    items: list[tuple[Path, str, str | None]] = []
    with _csv_errors(csv_path), open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        for col in ("path", "label"):
            if col not in fields:
                raise UserError(
                    f"{csv_path}: line 1: missing column {col!r} "
                    f"(need path,label[,group]; found {','.join(fields) or 'nothing'})"
                )
        reader.fieldnames = fields
        for line, row in enumerate(reader, start=2):
            rel = (row.get("path") or "").strip()
            label = (row.get("label") or "").strip()
            if not rel or not label:
                raise UserError(f"{csv_path}: line {line}: empty path or label")
            p = Path(rel) if Path(rel).is_absolute() else base / rel
            if not p.is_file():
                raise UserError(f"{csv_path}: line {line}: file not found: {rel}")
            group = (row.get("group") or "").strip() or None
            items.append((Path(os.path.normpath(p.absolute())), label, group))
    if not items:
        raise UserError(f"{csv_path}: no rows (need path,label[,group])")
    root = Path(os.path.commonpath([str(p.parent) for p, _, _ in items]))
    full = [(p, lab, g if g is not None else _rel(p, root)) for p, lab, g in items]
    return build_imageset(
        csv_path.stem,
        root,
        full,
        dataset=dataset,
        classes=classes,
        positive=positive,
        meta={"manifest": str(csv_path)},
    )


# -- ALL-IDB2 --------------------------------------------------------------------------

_ALL_IDB2 = re.compile(r"^Im(\d+)_([01])\.tif{1,2}$", re.IGNORECASE)


def load_all_idb2(path: str | Path | None, *, positive: str | None = None, **opts: Any) -> ImageSet:
    """ALL-IDB2: ``ImNNN_1.tif`` = blast (leukemia), ``ImNNN_0.tif`` = healthy."""
    dataset = "all-idb2"
    check_options(dataset, opts, ("positive",))
    root = require_dir(path, dataset)
    items: list[tuple[Path, str, str]] = []
    for p in list_images(root):
        m = _ALL_IDB2.match(p.name)
        if m:
            cls = "leukemia" if m.group(2) == "1" else "healthy"
            items.append((p, cls, _rel(p, root)))
    if not items:
        raise UserError(
            f"dataset 'all-idb2': no files named ImNNN_0.tif / ImNNN_1.tif under {root}"
        )
    return build_imageset(
        "all-idb2",
        root,
        items,
        dataset=dataset,
        classes=("healthy", "leukemia"),
        positive=positive,
        meta={"groups": "image"},
    )


# -- C-NMC 2019 ------------------------------------------------------------------------

_CNMC_NAME = re.compile(r"^UID_(H?\d+)_\d+_\d+_(all|hem)$", re.IGNORECASE)
_CNMC_FOLDERS = {"all": "leukemia", "leukemia": "leukemia", "hem": "healthy", "healthy": "healthy"}


def cnmc_patient(filename: str) -> str | None:
    """Patient id of a C-NMC cell image name (``UID_H10_43_1_hem.bmp`` -> ``H10``)."""
    m = _CNMC_NAME.match(Path(filename).stem)
    return m.group(1).upper() if m else None


def _cnmc_class(path: Path, root: Path) -> str | None:
    m = _CNMC_NAME.match(path.stem)
    if m:
        return "leukemia" if m.group(2).lower() == "all" else "healthy"
    for part in reversed(path.relative_to(root).parts[:-1]):
        if part.lower() in _CNMC_FOLDERS:
            return _CNMC_FOLDERS[part.lower()]
    return None


def load_cnmc(path: str | Path | None, *, positive: str | None = None, **opts: Any) -> ImageSet:
    """C-NMC 2019: ``all/`` and ``hem/`` (or ``leukemia/``/``healthy/``) folders, any depth.

    The class comes from the ``_all``/``_hem`` name suffix (or the folder); the
    group is the patient id parsed from ``UID_<patient>_<image>_<cell>_<all|hem>``,
    else the image's relative path.
    """
    dataset = "c-nmc"
    check_options(dataset, opts, ("positive",))
    root = require_dir(path, dataset)
    items: list[tuple[Path, str, str]] = []
    unlabelled = 0
    for p in list_images(root):
        cls = _cnmc_class(p, root)
        if cls is None:
            unlabelled += 1
            continue
        items.append((p, cls, cnmc_patient(p.name) or _rel(p, root)))
    if not items:
        raise UserError(
            f"dataset 'c-nmc': no C-NMC images under {root} "
            "(expected all/ and hem/ folders or UID_<patient>_..._<all|hem> names)"
        )
    meta: dict[str, Any] = {"groups": "patient_id"}
    if unlabelled:
        meta["ignored_unlabelled"] = unlabelled
    return build_imageset(
        "c-nmc",
        root,
        items,
        dataset=dataset,
        classes=("healthy", "leukemia"),
        positive=positive,
        meta=meta,
    )
