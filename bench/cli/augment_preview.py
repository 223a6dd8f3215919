"""``leukobench augment-preview``: a grid like the paper's Figure 4."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.cli.common import add_dataset, check_output, load_imageset, positive_int
from bench.data.augment import apply_transform, make_transform
from bench.data.decode import decode_resized
from bench.errors import UserError
from bench.readable import readable

COLUMNS = ("original", "translate", "reflect", "rotate")
TITLES = {
    "original": "original",
    "translate": "translated",
    "reflect": "reflected",
    "rotate": "rotated",
}


def preview_grid(
    data: str | None, *, dataset: str = "imagefolder", n: int = 3, seed: int = 0, size: int = 227
) -> tuple[np.ndarray, list[str]]:
    """``(rows, columns, H, W, 3)`` uint8 images and the row labels."""
    imageset = load_imageset(dataset, data)
    if len(imageset) == 0:
        raise UserError(f"dataset {dataset!r}: no images")
    if n < 1:
        raise UserError(f"--n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    # pick images round-robin over the classes (seeded)
    order = rng.permutation(len(imageset))
    queues = [list(order[imageset.labels[order] == k]) for k in range(len(imageset.classes))]
    picks: list[int] = []
    while len(picks) < min(n, len(imageset)):
        for q in queues:
            if q and len(picks) < n:
                picks.append(int(q.pop(0)))
    rows, labels = [], []
    for i in picks:
        try:
            img = decode_resized(imageset.paths[i], size)
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad files
            raise UserError(
                f"cannot read image {readable(imageset.paths[i])} ({type(exc).__name__}: {exc}); "
                "remove or replace it"
            ) from None
        row = [img]
        for kind in COLUMNS[1:]:
            row.append(apply_transform(img, make_transform(rng, kind)))
        rows.append(row)
        labels.append(f"{imageset.classes[imageset.labels[i]]}: {readable(imageset.paths[i].name)}")
    return np.asarray(rows, dtype=np.uint8), labels


def figure_format(out: Path) -> str:
    """The image format for ``out`` from its extension (png when none); UserError if unknown."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = out.suffix.lstrip(".").lower() or "png"
    known = FigureCanvasBase.get_supported_filetypes()
    if fmt not in known:
        raise UserError(
            f"--out {readable(out)}: unknown image type {out.suffix!r}; use one of "
            + ", ".join(f".{k}" for k in sorted(known))
        )
    return fmt


def save_figure(grid: np.ndarray, labels: list[str], out: Path) -> None:
    """Save the grid as an image (matplotlib, Agg backend), atomically."""
    fmt = figure_format(out)
    import matplotlib.pyplot as plt

    n_rows, n_cols = grid.shape[:2]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.2 * n_cols, 2.3 * n_rows), squeeze=False)
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.imshow(grid[r, c])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(TITLES[COLUMNS[c]], fontsize=10)
            if c == 0:
                ax.set_ylabel(labels[r], fontsize=7)
    fig.tight_layout()
    from bench.atomic import atomic_path

    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=110, format=fmt)
    finally:
        plt.close(fig)


def _run(args: argparse.Namespace) -> int:
    positive_int("--n", args.n, 1, 100)
    positive_int("--size", args.size, 16, 4096)
    positive_int("--seed", args.seed, 0, 2**32 - 1)
    check_output(args.out)
    figure_format(Path(args.out))
    grid, labels = preview_grid(
        args.data, dataset=args.dataset, n=args.n, seed=args.seed, size=args.size
    )
    save_figure(grid, labels, Path(args.out))
    print(f"wrote {args.out} ({grid.shape[0]} images x {grid.shape[1]} columns)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "augment-preview",
        help="save a grid of original/translated/reflected/rotated images (paper Fig. 4)",
        description="Save a grid like the paper's Figure 4: rows = images, columns = "
        "original, translated, reflected, rotated (loey2020 augmentation).",
    )
    p.add_argument("data", nargs="?", help="dataset folder (or CSV for --dataset manifest)")
    add_dataset(p)
    p.add_argument("--n", type=int, default=3, help="number of images (rows), default 3")
    p.add_argument("--seed", type=int, default=0, help="seed for image choice and transforms")
    p.add_argument("--size", type=int, default=227, help="input size in pixels, default 227")
    p.add_argument("--out", required=True, help="output image file, e.g. fig.png")
    p.set_defaults(func=_run)
