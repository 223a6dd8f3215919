"""Dataset loaders: messy folders, manifests, ALL-IDB2, C-NMC and the real datasets."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.data.loaders import cache_root, cnmc_patient, load_imagefolder, load_manifest
from bench.errors import UserError
from bench.registry import get_registry


def _png(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
    return path


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    _png(root / "leukemia" / "a.PNG", 1)
    _png(root / "leukemia" / "sub" / "deeper" / "b.png", 2)
    _png(root / "healthy" / "c.png", 3)
    _png(root / "healthy" / "d.JPG.png", 4)
    (root / "healthy" / "e.TIFF").write_bytes(b"not really")  # listed; validation rejects it
    (root / "healthy" / ".hidden.png").write_bytes(b"x")
    (root / "healthy" / ".DS_Store").write_bytes(b"x")
    (root / "healthy" / "notes.txt").write_text("x")
    (root / ".git").mkdir()
    _png(root / ".git" / "x.png")
    _png(root / "healthy" / ".thumbs" / "t.png")
    (root / "README.md").write_text("readme")
    (root / "labels.csv").write_text("path,label\n")
    _png(root / "loose.png")
    (root / "empty").mkdir()
    return root


def test_imagefolder_lists_images_only(messy: Path):
    s = get_registry().dataset("imagefolder").factory(messy)
    assert s.classes == ("healthy", "leukemia")
    assert s.positive == "leukemia"
    rel = [s.relpath(i) for i in range(len(s))]
    assert rel == [
        "healthy/c.png",
        "healthy/d.JPG.png",
        "healthy/e.TIFF",
        "leukemia/a.PNG",
        "leukemia/sub/deeper/b.png",
    ]
    assert s.labels.tolist() == [0, 0, 0, 1, 1]
    assert list(s.groups) == rel  # no patient ids: one group per image
    assert s.meta["ignored_folders"] == ["empty"]
    assert s.meta["ignored_loose_files"] == 1


def test_imagefolder_options(messy: Path):
    s = load_imagefolder(messy, classes=["leukemia", "healthy"], positive="healthy")
    assert s.classes == ("leukemia", "healthy") and s.positive == "healthy"
    assert s.labels.tolist() == [0, 0, 1, 1, 1]
    s = load_imagefolder(messy, classes="leukemia")
    assert s.classes == ("leukemia",) and len(s) == 2 and s.positive is None
    with pytest.raises(UserError, match="'positive'"):
        load_imagefolder(messy, positive="blast")
    with pytest.raises(UserError, match="'classes'.*blast"):
        load_imagefolder(messy, classes=["blast", "healthy"])
    with pytest.raises(UserError, match=r"'colour' \(known: classes, positive\)"):
        load_imagefolder(messy, colour="red")
    with pytest.raises(UserError, match="'positve'; did you mean 'positive'"):
        load_imagefolder(messy, positve="healthy")


def test_imagefolder_missing_or_empty_folder(tmp_path: Path):
    with pytest.raises(UserError, match=str(tmp_path / "nope")):
        load_imagefolder(tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    _png(tmp_path / "flat" / "x.png")
    with pytest.raises(UserError, match="root/<class>/<image>"):
        load_imagefolder(tmp_path / "flat")
    with pytest.raises(UserError, match="needs a path"):
        load_imagefolder(None)


def test_imagefolder_groups_from_labels_csv(tmp_path: Path):
    _png(tmp_path / "a" / "1.png")
    _png(tmp_path / "a" / "2.png")
    _png(tmp_path / "b" / "3.png")
    (tmp_path / "labels.csv").write_text("path,label,patient_id\na/1.png,a,P1\na/2.png,a,P1\n")
    s = load_imagefolder(tmp_path)
    assert list(s.groups) == ["P1", "P1", "b/3.png"]


def test_manifest(tmp_path: Path):
    _png(tmp_path / "imgs" / "x.png", 1)
    _png(tmp_path / "imgs" / "y.png", 2)
    _png(tmp_path / "other" / "z.png", 3)
    m = tmp_path / "sets" / "m.csv"
    m.parent.mkdir()
    m.write_text(
        "path,label,group\n../imgs/x.png,sick,p1\n../imgs/y.png,well,\n../other/z.png,sick,p1\n"
    )
    s = get_registry().dataset("manifest").factory(m)
    assert s.classes == ("sick", "well") and s.positive == "well"
    assert [s.relpath(i) for i in range(3)] == ["imgs/x.png", "other/z.png", "imgs/y.png"]
    assert list(s.groups) == ["p1", "p1", "imgs/y.png"]
    assert load_manifest(m, positive="sick").positive == "sick"


def test_manifest_errors_name_the_line(tmp_path: Path):
    _png(tmp_path / "x.png")
    m = tmp_path / "m.csv"
    m.write_text("path,label\nx.png,a\nmissing.png,b\n")
    with pytest.raises(UserError, match=r"m\.csv: line 3: file not found: missing\.png"):
        load_manifest(m)
    m.write_text("file,label\nx.png,a\n")
    with pytest.raises(UserError, match="line 1: missing column 'path'"):
        load_manifest(m)
    with pytest.raises(UserError, match="CSV not found"):
        load_manifest(tmp_path / "nope.csv")


def test_all_idb2_layout(tmp_path: Path):
    for name in ("Im001_1.tif", "Im002_1.TIF", "Im131_0.tif", "Im200_0.tif", "other.tif"):
        _png(tmp_path / "ALL_IDB2" / "img" / name)
    s = get_registry().dataset("all-idb2").factory(tmp_path)
    assert s.classes == ("healthy", "leukemia") and s.positive == "leukemia"
    assert s.class_counts() == {"healthy": 2, "leukemia": 2}
    assert [p.name for p in s.paths] == ["Im131_0.tif", "Im200_0.tif", "Im001_1.tif", "Im002_1.TIF"]
    with pytest.raises(UserError, match="ImNNN"):
        get_registry().dataset("all-idb2").factory(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    p = tmp_path / "empty_dir"
    p.mkdir()
    return p


def test_cnmc_patient_ids():
    assert cnmc_patient("UID_H10_43_1_hem.bmp") == "H10"
    assert cnmc_patient("UID_11_10_1_all.bmp") == "11"
    assert cnmc_patient("1.bmp") is None


def test_cnmc_layout_all_hem(tmp_path: Path):
    _png(tmp_path / "fold_0" / "all" / "UID_11_10_1_all.bmp")
    _png(tmp_path / "fold_0" / "all" / "UID_11_12_2_all.bmp")
    _png(tmp_path / "fold_1" / "hem" / "UID_H10_43_1_hem.bmp")
    s = get_registry().dataset("c-nmc").factory(tmp_path)
    assert s.classes == ("healthy", "leukemia")
    assert list(s.groups) == ["H10", "11", "11"]


def test_cache_root_honours_env(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LEUKOBENCH_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("LEUKOBENCH_CACHE")
    assert cache_root() == Path.home() / ".cache" / "leukobench"


def test_real_cnmc_patients_match_labels_csv(dataset_dir):
    root = dataset_dir("cnmc2019_mini")
    s = get_registry().dataset("c-nmc").factory(root)
    assert s.class_counts() == {"healthy": 30, "leukemia": 30}
    with open(root / "labels.csv", newline="") as f:
        truth = {row["path"]: row["patient_id"] for row in csv.DictReader(f)}
    got = {s.relpath(i): s.groups[i] for i in range(len(s))}
    assert got == truth
    assert len(set(s.groups)) == 37
    # imagefolder reads the same patient ids from labels.csv
    assert load_imagefolder(root).groups == s.groups


def test_real_aria_counts(dataset_dir):
    s = load_imagefolder(dataset_dir("aria_all_pbs_binary"))
    assert len(s) == 3216
    assert s.class_counts() == {"healthy": 504, "leukemia": 2712}
    assert s.positive == "leukemia"
    assert len(set(s.groups)) == 3216
