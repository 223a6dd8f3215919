"""Build the reproduction study's manifest CSVs (docs/REPRODUCTION.md) from the shared datasets.

The CSVs list image paths (relative to the CSV), labels and groups; no image is
copied. Two manifests, both seeded and deterministic:

* ``two_source.csv`` -- the paper's two-source design: healthy = every
  ``bccd_wbc_type_smears`` field (348, the Kaggle/BCCD source the paper used),
  leukemia = an equal-sized seeded sample of ``aria_all_pbs_binary/leukemia``.
* ``source_check.csv`` -- the source-confounding check: both classes are
  non-leukemic; ``bccd`` = every BCCD field, ``aria`` = an equal-sized seeded
  sample of ``aria_all_pbs_binary/healthy`` (benign). A classifier that separates
  these separates *sources*, not disease.

Usage::

    python scripts/make_study_manifests.py [--data ../shared/data] [--out scratch/manifests] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "scratch" / "manifests"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}

Row = tuple[Path, str, str]  # (absolute image path, label, group)


class ManifestError(Exception):
    """A dataset folder the study needs is missing or too small."""


def list_images(folder: Path) -> list[Path]:
    """Visible image files under ``folder`` (recursively), sorted by relative path."""
    if not folder.is_dir():
        raise ManifestError(f"folder not found: {folder}")
    found = [
        p
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def seeded_sample(paths: list[Path], n: int, seed: int) -> list[Path]:
    """``n`` paths drawn without replacement with ``random.Random(seed)``, kept sorted."""
    if n > len(paths):
        raise ManifestError(f"need {n} images, only {len(paths)} available")
    return sorted(random.Random(seed).sample(paths, n))


def rows_for(paths: list[Path], label: str, source: str, root: Path) -> list[Row]:
    """Manifest rows; each image is its own group, named ``source/relative path``."""
    return [(p, label, f"{source}/{p.relative_to(root).as_posix()}") for p in paths]


def two_source_rows(data: Path, seed: int) -> list[Row]:
    """BCCD fields as ``healthy`` + an equal-sized seeded Aria ``leukemia`` sample."""
    bccd_root, aria_root = data / "bccd_wbc_type_smears", data / "aria_all_pbs_binary"
    bccd = list_images(bccd_root)
    aria = seeded_sample(list_images(aria_root / "leukemia"), len(bccd), seed)
    return rows_for(bccd, "healthy", "bccd", bccd_root) + rows_for(
        aria, "leukemia", "aria", aria_root
    )


def source_check_rows(data: Path, seed: int) -> list[Row]:
    """BCCD fields (``bccd``) + an equal-sized seeded sample of Aria benign (``aria``)."""
    bccd_root, aria_root = data / "bccd_wbc_type_smears", data / "aria_all_pbs_binary"
    bccd = list_images(bccd_root)
    aria = seeded_sample(list_images(aria_root / "healthy"), len(bccd), seed)
    return rows_for(bccd, "bccd", "bccd", bccd_root) + rows_for(aria, "aria", "aria", aria_root)


def write_manifest(rows: list[Row], csv_path: Path) -> Path:
    """Write ``path,label,group`` rows (paths relative to the CSV) atomically."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = csv_path.with_name(f".{csv_path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "group"])
        for path, label, group in rows:
            rel = Path(os.path.relpath(path, csv_path.parent)).as_posix()
            writer.writerow([rel, label, group])
    os.replace(tmp, csv_path)
    return csv_path


def build_all(data: Path, out: Path, seed: int = 0) -> dict[str, Path]:
    """Write every study manifest under ``out``; return ``{name: csv path}``."""
    data, out = data.resolve(), out.resolve()
    builders = {"two_source": two_source_rows, "source_check": source_check_rows}
    return {
        name: write_manifest(build(data, seed), out / f"{name}.csv")
        for name, build in builders.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared datasets folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the CSVs go")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Aria samples")
    args = parser.parse_args(argv)
    try:
        written = build_all(args.data, args.out, args.seed)
    except ManifestError as exc:
        print(f"error: {exc} (pass --data PATH to the shared datasets folder)", file=sys.stderr)
        return 2
    for name, path in written.items():
        with open(path, encoding="utf-8") as f:
            n = sum(1 for _ in f) - 1
        print(f"{name}: {n} images -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
