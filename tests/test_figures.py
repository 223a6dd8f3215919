"""Figures: metric bars, confusion matrices and training curves as non-empty PNGs."""

from __future__ import annotations

import pytest
from fixtures.records import binary_record, multiclass_record, write
from PIL import Image

from bench.cli import main
from bench.figures import write_figures


def _check_png(path):
    assert path.stat().st_size > 2000
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 100 and im.height > 100


@pytest.mark.parametrize("make", [binary_record, multiclass_record])
def test_write_figures(tmp_path, make):
    record = make()
    paths = write_figures(record, tmp_path)
    names = [p.name for p in paths]
    assert any(n.endswith("-metrics.png") for n in names)
    n_methods = 6 if make is binary_record else 2
    assert sum(n.endswith("-confusion.png") for n in names) == n_methods
    assert sum(n.endswith("-training.png") for n in names) == (2 if make is binary_record else 0)
    for p in paths:
        _check_png(p)
    assert not list(tmp_path.glob(".*"))  # no temp files left


def test_cli_figures(tmp_path):
    path = write(binary_record(), tmp_path)
    figs = tmp_path / "figs"
    assert (
        main(["report", str(path), "--table", "1", "--format", "md", "--figures", str(figs)]) == 0
    )
    assert len(list(figs.glob("*.png"))) == 9
