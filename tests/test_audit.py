"""`leukobench audit` on small generated image folders (no real data needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.audit.evaluation import AucRanker, binary_auc, cluster_weights
from bench.audit.pipeline import AuditInput, AuditOptions, run_audit
from bench.audit.properties import acquisition_properties, file_properties
from bench.cli import main
from bench.data.loaders import load_imagefolder


def blob_image(seed: int, side: int = 96) -> Image.Image:
    """A smooth random colour field (distinct per seed, stable under resizing/re-encoding)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC)


def make_folder(root: Path, n: int = 24, sizes: tuple[int, int] = (96, 96), seed: int = 0) -> Path:
    """``root/{a,b}/NN.jpg``: class ``a`` at ``sizes[0]`` px, class ``b`` at ``sizes[1]`` px."""
    for k, cls in enumerate(("a", "b")):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = blob_image(seed * 10_000 + k * 1000 + i, sizes[k])
            img.save(root / cls / f"{i:02d}.jpg", quality=90)
    return root


def audit(root: Path, **opts) -> dict:
    imageset = load_imagefolder(root)
    options = AuditOptions(backbone=None, progress=False, **opts)
    return run_audit(AuditInput(imageset, "imagefolder", str(root)), [], options)


def finding(report: dict, fid: str) -> dict:
    return next(f for f in report["findings"] if f["id"] == fid)


def test_planted_reencoded_and_resized_copies_are_found_across_classes(tmp_path):
    root = make_folder(tmp_path / "d")
    src = Image.open(root / "a" / "03.jpg")
    src.save(root / "b" / "copy_reencoded.jpg", quality=55)  # re-encoded, other class
    src.resize((61, 61), Image.Resampling.LANCZOS).save(root / "b" / "copy_resized.png")
    report = audit(root)
    dup = finding(report, "duplicates")
    assert dup["level"] == "fail"
    conflicts = {
        frozenset((p["rel_a"], p["rel_b"])) for p in dup["pairs"] if p["kind"] == "across classes"
    }
    assert frozenset(("a/03.jpg", "b/copy_reencoded.jpg")) in conflicts
    assert frozenset(("a/03.jpg", "b/copy_resized.png")) in conflicts
    # no other image is taken for a copy; the two copies (both in b) also match each other
    assert dup["counts"]["across classes"] == 2
    assert dup["counts"]["across groups"] == 1


def test_padded_copy_is_found_and_distinct_cells_on_black_are_not(tmp_path):
    """Hashes compare content without blank borders: black padding neither hides a copy nor
    makes two different segmented cells look alike."""
    from PIL import ImageDraw, ImageOps

    root = tmp_path / "d"
    for k, cls in enumerate(("a", "b")):
        (root / cls).mkdir(parents=True)
        for i in range(8):
            img = Image.new("RGB", (200, 200))
            ImageDraw.Draw(img).ellipse((60 + 3 * i, 55, 140, 150 - 2 * i), fill=(120, 60, 140))
            img.paste(blob_image(100 * k + i, 40), (80, 80))  # texture inside the "cell"
            img.save(root / cls / f"{i:02d}.png")
    src = Image.open(root / "a" / "02.png")
    ImageOps.expand(src.crop((50, 50, 150, 160)), border=30, fill="black").save(
        root / "b" / "padded.png"
    )
    dup = finding(audit(root), "duplicates")
    found = {frozenset((p["rel_a"], p["rel_b"])) for p in dup["pairs"]}
    assert frozenset(("a/02.png", "b/padded.png")) in found
    assert dup["counts"]["across classes"] == 1


def test_exact_copy_within_a_class_straddles_groups(tmp_path):
    root = make_folder(tmp_path / "d")
    (root / "a" / "dup.jpg").write_bytes((root / "a" / "05.jpg").read_bytes())
    dup = finding(audit(root), "duplicates")
    assert dup["level"] == "warn"
    exact = [p for p in dup["pairs"] if p["method"] == "exact"]
    assert [(p["kind"], {p["rel_a"], p["rel_b"]}) for p in exact] == [
        ("across groups", {"a/05.jpg", "a/dup.jpg"})
    ]


def test_clean_folder_has_no_duplicates(tmp_path):
    dup = finding(audit(make_folder(tmp_path / "d")), "duplicates")
    assert dup["level"] == "ok" and dup["n_pairs"] == 0


def test_resolution_shortcut_is_flagged_and_random_labels_are_not(tmp_path):
    shortcut = audit(make_folder(tmp_path / "s", sizes=(96, 128)))
    acq = finding(shortcut, "acquisition")
    assert acq["level"] == "fail"
    assert "file properties alone" in acq["verdict"]
    top = acq["result"]["per_family"][0]
    assert top["auc"]["value"] == 1.0 and top["family"] in ("resolution", "file size")
    fair = finding(audit(make_folder(tmp_path / "f", sizes=(96, 96))), "acquisition")
    assert fair["level"] != "fail"
    assert fair["result"]["file_properties"] is None or (
        fair["result"]["file_properties"]["auc"]["low"] < 0.9
    )


def test_cluster_bootstrap_draws_whole_groups():
    groups = np.array(["p1", "p1", "p1", "p2", "p3", "p3"])
    for w in cluster_weights(groups, 50, seed=1):
        assert len(set(w[:3])) == 1 and len(set(w[4:])) == 1  # a group moves as a whole
        assert w[[0, 3, 4]].sum() == 3  # three groups drawn
    # weighted AUC == the AUC of the resample written out row by row
    rng = np.random.default_rng(0)
    y, score = rng.integers(0, 2, 40), rng.integers(0, 5, 40).astype(float)  # many ties
    w = rng.integers(0, 3, 40).astype(float)
    rows = np.repeat(np.arange(40), w.astype(int))
    assert AucRanker(y, score)(w) == pytest.approx(binary_auc(y[rows], score[rows]))
    from sklearn.metrics import roc_auc_score

    assert binary_auc(y, score) == pytest.approx(roc_auc_score(y, score))
    assert binary_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert binary_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5


def test_jpeg_quality_subsampling_and_borders(tmp_path):
    img = np.full((100, 100, 3), 255, np.uint8)
    img[10:90, 10:90] = np.asarray(blob_image(1, 80))
    path = tmp_path / "x.jpg"
    Image.fromarray(img).save(path, quality=75, subsampling=0)
    props = file_properties(path.read_bytes())
    assert props["jpeg_quality"] == 75
    assert props["jpeg_subsampling"] == "4:4:4"
    assert 0.05 <= props["border_top"] <= 0.12 and 0.05 <= props["border_left"] <= 0.12
    assert props["width"] == 100 and props["format"] == "JPEG"


def test_properties_are_cached_by_digest(tmp_path):
    root = make_folder(tmp_path / "d", n=4)
    imageset = load_imagefolder(root)
    assert acquisition_properties(imageset).n_computed == 8
    again = acquisition_properties(imageset)
    assert again.n_computed == 0 and len(again.rows) == 8


def test_bad_image_exits_2_naming_it_and_skip_bad_goes_on(tmp_path, capsys):
    root = make_folder(tmp_path / "d", n=6)
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    assert main(["audit", str(root), "--backbone", "none", "--format", "json"]) == 2
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "--skip-bad" in err
    assert main(["audit", str(root), "--backbone", "none", "--format", "json", "--skip-bad"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dataset"]["n_excluded"] == 1
    assert report["dataset"]["excluded"][0][0] == "b/broken.jpg"


def test_unknown_dataset_and_bad_out_suffix_exit_2(tmp_path, capsys):
    root = make_folder(tmp_path / "d", n=4)
    assert main(["audit", str(root), "--dataset", "no-such-kind", "--backbone", "none"]) == 2
    assert main(["audit", str(root), "--out", str(tmp_path / "r.txt"), "--backbone", "none"]) == 2
    assert "suffix" in capsys.readouterr().err
    for option, value, message in (
        ("--seed", "-1", "--seed must be in"),
        ("--seed", str(2**32), "--seed must be in"),
        ("--feature-similarity", "-5", "cosine similarity in [-1, 1]"),
        ("--feature-similarity", "nan", "cosine similarity in [-1, 1]"),
        ("--copies", "1000", "--copies must be in 1..100"),
    ):
        argv = ["audit", str(root), "--backbone", "none", option, value]
        if option == "--copies":
            argv += ["--augment", "loey2020"]
        assert main(argv) == 2, option
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_cli_formats_and_fail_on(tmp_path, capsys):
    root = make_folder(tmp_path / "s", n=12, sizes=(96, 128))
    base = ["audit", str(root), "--backbone", "none"]
    out_json, out_html, out_md = tmp_path / "r.json", tmp_path / "r.html", tmp_path / "r.md"
    assert main([*base, "--out", str(out_json)]) == 0
    report = json.loads(out_json.read_text())
    assert report["level"] == "fail" and report["dataset"]["n_images"] == 24
    assert [f["id"] for f in report["findings"]] == ["duplicates", "acquisition", "leakage"]
    assert main([*base, "--out", str(out_md), "--fail-on", "fail"]) == 1
    assert "Acquisition shortcut test" in out_md.read_text()
    (root / "a" / "copy.jpg").write_bytes((root / "b" / "01.jpg").read_bytes())
    assert main([*base, "--out", str(out_html), "--fail-on", "warn"]) == 1
    page = out_html.read_text()
    assert page.startswith("<!doctype html>") and "<style>" in page
    assert "data:image/jpeg;base64," in page  # thumbnails inline
    assert "http://" not in page and "https://" not in page and "<link" not in page
    capsys.readouterr()
    assert main([*base, "--format", "rich"]) == 0  # no --fail-on: exit 0 whatever it finds
    assert "Findings" in capsys.readouterr().out


def test_source_check_against_a_differently_acquired_folder(tmp_path):
    here = make_folder(tmp_path / "one", n=16, sizes=(96, 96), seed=1)
    there = make_folder(tmp_path / "two", n=16, sizes=(128, 128), seed=2)
    (there / "a" / "shared.jpg").write_bytes((here / "a" / "02.jpg").read_bytes())
    report = run_audit(
        AuditInput(load_imagefolder(here), "imagefolder", str(here)),
        [AuditInput(load_imagefolder(there), "imagefolder", str(there))],
        AuditOptions(backbone=None, progress=False),
    )
    check = finding(report, "source:two")
    assert check["level"] == "fail"
    subjects = [c["subject"] for c in check["result"]["comparisons"]]
    assert subjects == ["class 'a'", "class 'b'"]
    assert check["result"]["shared_images"][0]["method"] == "exact"


@pytest.mark.slow
def test_feature_tests_with_the_offline_backbone(tmp_path, capsys):
    """efficientnet_lite0 (weights ship offline): leakage delta with augmentation, feature pairs."""
    root = make_folder(tmp_path / "d", n=10)
    args = ["audit", str(root), "--format", "json", "--no-progress", "--folds", "3"]
    assert main([*args, "--augment", "loey2020", "--copies", "2",
                 "--feature-similarity", "0.999"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    leak = finding(report, "leakage")["result"]
    assert leak["n_samples"] == 40 and leak["n_units"] == 20
    assert leak["augmentation"] == "loey2020 x2"
    assert -1 <= leak["delta"]["value"] <= 1
    assert report["settings"]["backbone"].startswith("efficientnet_lite0")
    assert main(args) == 0  # second run: properties and features from the caches
    again = json.loads(capsys.readouterr().out)
    assert again["cache"]["properties_computed"] == 0
    assert again["cache"]["features_computed"] == 0 and again["cache"]["features_cached"] == 20


def test_suite_augmentation_is_read_from_the_suite_file(tmp_path):
    from bench.cli.audit import suite_augmentation
    from bench.errors import UserError

    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nname = "x"\n\n[augment]\nscheme = "loey2020"\ncopies = 3\n')
    assert suite_augmentation(suite) == ("loey2020", 3)
    (tmp_path / "plain.toml").write_text('[suite]\nname = "y"\n')
    assert suite_augmentation(tmp_path / "plain.toml") == ("none", 5)
    with pytest.raises(UserError, match="not found"):
        suite_augmentation(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[augment\n")
    with pytest.raises(UserError, match="TOML"):
        suite_augmentation(tmp_path / "bad.toml")
    (tmp_path / "typo.toml").write_text('[augment]\nscheme = "loey2020"\ncopes = 3\n')
    with pytest.raises(UserError, match="augment.copes: unknown key; did you mean 'copies'"):
        suite_augmentation(tmp_path / "typo.toml")
    whole = tmp_path / "whole.toml"  # a whole suite is checked as `run` checks it
    whole.write_text(
        '[data]\ndataset = "synthetic"\n[augment]\nscheme = "loey2020"\ncopies = 2\n'
        '[[protocol]]\nkind = "features"\nbackbones = ["efficientnet_lite0"]\nclassifiers = ["lda"]\nfold = 2\n'
    )
    with pytest.raises(UserError, match=r"protocol\[0\].fold: unknown key; did you mean 'folds'"):
        suite_augmentation(whole)
    whole.write_text(whole.read_text().replace("fold = 2", "folds = 2"))
    assert suite_augmentation(whole) == ("loey2020", 2)
