"""``leukobench augment-preview`` writes a Figure-4-like grid."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from bench.cli import main
from bench.cli.augment_preview import preview_grid


def test_preview_grid_shape_and_columns():
    grid, labels = preview_grid(None, dataset="synthetic", n=3, size=64)
    assert grid.shape == (3, 4, 64, 64, 3)
    assert labels[0].startswith("healthy") and labels[1].startswith("leukemia")
    assert (grid[:, 2] == grid[:, 0, :, ::-1]).all()  # reflected column mirrors the original
    assert (grid[:, 1] != grid[:, 0]).any() and (grid[:, 3] != grid[:, 0]).any()


def test_cli_writes_png(tmp_path: Path, capsys):
    out = tmp_path / "fig.png"
    assert main(["augment-preview", "--dataset", "synthetic", "--n", "2", "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.width > 200 and im.height > 100
    assert main(["augment-preview", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "folder not found" in capsys.readouterr().err
