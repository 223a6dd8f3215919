"""Publication figures: every file written opens, in PNG, SVG and PDF; names are readable."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from fixtures.records import binary_record, multiclass_record, write
from PIL import Image

from bench.cli import main
from bench.figures import figure_set, write_figures


def open_figure(path):
    """Open a written figure the way its format is read; fail on anything broken."""
    data = path.read_bytes()
    assert len(data) > 1500, path
    if path.suffix == ".png":
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.format == "PNG" and im.width > 100 and im.height > 100
            grey = im.convert("L")
            assert grey.getextrema()[0] < grey.getextrema()[1]  # not blank
    elif path.suffix == ".svg":
        root = ET.fromstring(data)
        assert root.tag.endswith("svg")
        assert b"<text" in data or b"<path" in data
    elif path.suffix == ".pdf":
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
        if shutil.which("pdftoppm"):
            out = subprocess.run(["pdftoppm", "-png", "-r", "20", str(path)], capture_output=True)
            assert out.returncode == 0 and out.stdout.startswith(b"\x89PNG")
    else:
        raise AssertionError(f"unexpected figure file {path}")


@pytest.mark.parametrize("make", [binary_record, multiclass_record])
@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_every_figure_opens(tmp_path, make, fmt):
    record = make()
    figures = figure_set(record, tmp_path, fmt=fmt, dpi=80)
    kinds = [f.kind for f in figures]
    n_methods = 6 if make is binary_record else 2
    assert kinds.count("estimates") == 1
    assert kinds.count("confusion") == n_methods
    assert kinds.count("training") == (2 if make is binary_record else 0)
    assert kinds.count("roc") == kinds.count("pr") >= 1  # from the stored scores
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(f.path for f in figures)  # nothing else, no temp files
    for f in figures:
        assert f.path.suffix == f".{fmt}" and f.path.parent.name == record["run_id"]
        assert record["run_id"] not in f.path.name  # the folder carries the run id
        assert f.caption and record["run_id"] in f.caption
        open_figure(f.path)


def test_titles_carry_no_run_id_and_names_read(tmp_path):
    record = binary_record()
    figures = figure_set(record, tmp_path, fmt="svg")
    for f in figures:
        text = f.path.read_text(encoding="utf-8")
        assert record["run_id"] not in text, f.path.name
        assert f.path.stem.replace("-", "").isalnum()
    names = {f.path.name for f in figures}
    assert "estimates.svg" in names
    assert any(n.endswith("-roc.svg") and "grouped" in n for n in names)


def test_leaky_methods_are_drawn_in_the_leaky_colour(tmp_path):
    record = binary_record()
    for cell in record["cells"]:
        cell["split"] = {"kind": "paper-leaky", "folds": 5, "holdout": None, "leaky": True}
    (est,) = [f for f in figure_set(record, tmp_path, fmt="svg") if f.kind == "estimates"]
    assert "#d55e00" in est.path.read_text(encoding="utf-8").lower()


def test_cli_figures_formats_and_bad_options(tmp_path, capsys):
    path = write(binary_record(), tmp_path)
    figs = tmp_path / "figs"
    argv = ["report", str(path), "--table", "1", "--format", "md", "--figures", str(figs)]
    assert main([*argv, "--figure-format", "pdf", "--dpi", "100"]) == 0
    pdfs = list(figs.rglob("*.pdf"))
    assert len(pdfs) >= 9
    for p in pdfs:
        open_figure(p)
    assert main([*argv, "--dpi", "5"]) == 2
    assert "--dpi" in capsys.readouterr().err


def test_write_figures_returns_paths(tmp_path):
    paths = write_figures(multiclass_record(), tmp_path, "png", 60)
    assert paths and all(p.exists() for p in paths)
