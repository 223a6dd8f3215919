"""Validation of bad inputs, mode conversion to RGB, duplicates and the verdict cache."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.data.decode import decode_resized, load_rgb
from bench.data.loaders import load_imagefolder
from bench.data.validate import fingerprint, validate
from bench.errors import BadImagesError, UserError


def _rgb(seed: int, h: int = 32, w: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, arr: np.ndarray, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, fmt, **kw)
    return path


def _i16(arr: np.ndarray) -> Image.Image:
    im = Image.fromarray(arr.astype(np.uint16))
    assert im.mode.startswith("I;16")
    return im


def _jpeg_bytes(arr: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(arr).save(b, "JPEG", quality=90)
    return b.getvalue()


@pytest.fixture
def good(tmp_path: Path) -> Path:
    root = tmp_path / "good"
    for k in range(3):
        _save(root / "healthy" / f"h{k}.png", _rgb(k))
        _save(root / "leukemia" / f"l{k}.jpg", _rgb(10 + k))
    return root


def _bad_folder(good: Path) -> Path:
    d = good / "leukemia"
    data = _jpeg_bytes(_rgb(99, 64, 64))
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.jpg").write_text("hello, I am not an image\n")
    return good


def test_bad_files_stop_the_run_with_one_line_each(good: Path):
    s = load_imagefolder(_bad_folder(good))
    with pytest.raises(BadImagesError) as err:
        validate(s)
    msg = str(err.value)
    reasons = dict(err.value.problems)
    assert set(Path(p).name for p in reasons) == {"truncated.jpg", "empty.jpg", "text.jpg"}
    by_name = {Path(p).name: r for p, r in reasons.items()}
    assert by_name["empty.jpg"] == "zero-byte file"
    assert by_name["text.jpg"].startswith("not an image")
    assert by_name["truncated.jpg"].startswith("truncated image")
    assert "--skip-bad" in msg
    assert err.value.exit_code == 2
    assert len(msg.splitlines()) == 1 + 3 + 1  # header, one line per file, hint


def test_skip_bad_excludes_and_lists(good: Path):
    s = load_imagefolder(_bad_folder(good))
    out, rep = validate(s, skip_bad=True)
    assert len(out) == 6
    assert sorted(r for r, _ in rep.excluded) == [
        "leukemia/empty.jpg",
        "leukemia/text.jpg",
        "leukemia/truncated.jpg",
    ]
    assert len(rep.digests) == len(out)
    assert rep.to_json()["excluded"][0][0].startswith("leukemia/")
    assert out.meta["fingerprint"] == rep.fingerprint


def test_truncated_jpeg_missing_only_its_end_marker_is_caught(good: Path):
    data = _jpeg_bytes(_rgb(5, 200, 300))
    (good / "healthy" / "cut.jpg").write_bytes(data[:-2])
    _, rep = validate(load_imagefolder(good), skip_bad=True)
    assert [r for r, _ in rep.excluded] == ["healthy/cut.jpg"]


def test_decompression_bomb_by_pixel_limit(good: Path):
    _save(good / "healthy" / "big.png", _rgb(7, 100, 100))
    s = load_imagefolder(good)
    with pytest.raises(BadImagesError, match=r"big\.png: decompression bomb"):
        validate(s, max_pixels=50 * 50)
    out, _ = validate(s)  # the default limit accepts it (cached verdict re-checked)
    assert len(out) == 7


def test_duplicates_within_class_kept_once(good: Path):
    shutil.copy(good / "healthy" / "h0.png", good / "healthy" / "zz_copy.png")
    out, rep = validate(load_imagefolder(good))
    assert len(out) == 6
    assert rep.duplicates == [("healthy/zz_copy.png", "healthy/h0.png")]
    assert any("duplicate" in w for w in rep.warnings)


def test_duplicate_across_classes_is_a_label_conflict(good: Path):
    shutil.copy(good / "healthy" / "h1.png", good / "leukemia" / "same.png")
    with pytest.raises(UserError, match=r"label conflict: .*h1\.png.*same\.png"):
        validate(load_imagefolder(good))


def test_single_class_and_min_per_class(good: Path):
    s = load_imagefolder(good, classes=["healthy"])
    with pytest.raises(UserError, match="at least 2 are needed"):
        validate(s)
    with pytest.raises(UserError, match="class 'healthy' has 3 image.*at least 10"):
        validate(load_imagefolder(good), min_per_class=10)
    out, _ = validate(load_imagefolder(good), min_per_class=3)
    assert len(out) == 6


def test_warm_rerun_decodes_nothing_and_fingerprint_is_stable(good: Path):
    s = load_imagefolder(good)
    _, cold = validate(s, workers=2)
    _, warm = validate(s, workers=1)
    assert cold.n_decoded == 6 and warm.n_decoded == 0
    assert cold.fingerprint == warm.fingerprint
    # a changed label or content changes the fingerprint
    assert fingerprint(["a"], ["d"], ["x"]) != fingerprint(["a"], ["d"], ["y"])
    _save(good / "healthy" / "h0.png", _rgb(123))
    _, changed = validate(load_imagefolder(good))
    assert changed.fingerprint != cold.fingerprint and changed.n_decoded == 1


# -- modes -> 8-bit RGB ----------------------------------------------------------------


def test_modes_convert_to_rgb(tmp_path: Path):
    base = _rgb(1, 20, 30)
    gray = base[..., 0]
    cases = {}
    cases["gray.png"] = _save(tmp_path / "gray.png", gray)
    rgba = np.dstack([base, np.full(gray.shape, 255, np.uint8)])
    rgba[0, 0, 3] = 0
    cases["rgba.png"] = _save(tmp_path / "rgba.png", rgba)
    pal = Image.fromarray(base).quantize(16)
    pal.save(tmp_path / "pal.png")
    g16 = (gray.astype(np.uint16) * 257).astype(np.uint16)
    _i16(g16).save(tmp_path / "g16.png")
    Image.fromarray(base).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    _i16(g16).save(tmp_path / "g16.tif")

    for name in ("gray.png", "rgba.png", "pal.png", "g16.png", "cmyk.jpg", "g16.tif"):
        im = load_rgb(tmp_path / name)
        assert im.mode == "RGB" and im.size == (30, 20), name
    np.testing.assert_array_equal(np.asarray(load_rgb(tmp_path / "gray.png"))[..., 1], gray)
    got_rgba = np.asarray(load_rgb(tmp_path / "rgba.png"))
    assert got_rgba[0, 0].tolist() == [0, 0, 0]  # transparent -> black
    np.testing.assert_array_equal(got_rgba[1:, 1:], base[1:, 1:])
    pal_rgb = np.asarray(pal.convert("RGB"))
    np.testing.assert_array_equal(np.asarray(load_rgb(tmp_path / "pal.png")), pal_rgb)
    for name in ("g16.png", "g16.tif"):  # scaled, not clipped to 255
        np.testing.assert_array_equal(np.asarray(load_rgb(tmp_path / name))[..., 0], gray)
    cmyk = np.asarray(load_rgb(tmp_path / "cmyk.jpg")).astype(int)
    assert np.abs(cmyk - base.astype(int)).mean() < 20


def test_exif_rotation_is_applied(tmp_path: Path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white in the stored pixels
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    out = np.asarray(load_rgb(tmp_path / "r.jpg"))
    assert out.shape == (40, 20, 3)
    assert out[:15].mean() > 200 and out[25:].mean() < 50  # white on top after rotation
    small = decode_resized(tmp_path / "r.jpg", 16)
    assert small.shape == (16, 16, 3) and small.dtype == np.uint8


def test_all_modes_pass_validation(tmp_path: Path):
    base = _rgb(3, 16, 16)
    _save(tmp_path / "a" / "gray.png", base[..., 0])
    _save(tmp_path / "a" / "rgba.png", np.dstack([base, base[..., :1]]))
    (tmp_path / "b").mkdir()
    Image.fromarray(base).convert("CMYK").save(tmp_path / "b" / "cmyk.jpg")
    _i16(base[..., 0].astype(np.uint16) * 257).save(tmp_path / "b" / "g16.png")
    out, rep = validate(load_imagefolder(tmp_path))
    assert len(out) == 4 and not rep.excluded


def test_real_aria_validates(dataset_dir):
    s = load_imagefolder(dataset_dir("aria_all_pbs_binary"))
    out, rep = validate(s, min_per_class=10)
    assert len(out) == 3216 and not rep.excluded and not rep.duplicates
    assert len(rep.digests) == 3216
