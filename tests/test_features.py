"""Feature extraction: correctness, cache reuse, resume, decode reuse, masks, CLI."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.backbone import Backbone
from bench.data.decode import decode_resized
from bench.data.imageset import IDENTITY, ImageSet, Samples, Transform, file_digest
from bench.errors import BadImagesError, UserError
from bench.extraction import DecodedImages, extract_features, sample_keys
from bench.feature_cache import CacheCorruptionWarning, FeatureCache


def _write_images(folder: Path, n: int = 10, size: int = 48) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        cls = folder / ("healthy" if i % 2 else "leukemia")
        cls.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)
        path = cls / f"im{i:02d}.{'png' if i % 3 == 0 else 'jpg'}"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def _imageset(paths: list[Path]) -> tuple[ImageSet, list[str]]:
    labels = np.array([0 if p.parent.name == "healthy" else 1 for p in paths])
    iset = ImageSet(
        "tiny", tuple(paths), labels, ("healthy", "leukemia"), tuple(str(p) for p in paths)
    )
    return iset, [file_digest(p) for p in paths]


def _tiny_backbone(name: str = "tiny", size: int = 32, seed: int = 0) -> Backbone:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
    ).eval()
    return Backbone(
        name=name,
        input_size=size,
        feature_dim=32,
        extractor=net,
        make_finetune=lambda k: None,
        weights="none",
        weights_digest=f"random:{seed}",
        pretrained=False,
    )


def _reference(backbone: Backbone, img: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    x = (x - torch.tensor(backbone.mean).view(1, 3, 1, 1)) / torch.tensor(backbone.std).view(
        1, 3, 1, 1
    )
    with torch.inference_mode():
        return backbone.extractor(x)[0].numpy()


@pytest.fixture
def tiny(tmp_path: Path):
    paths = _write_images(tmp_path / "data")
    iset, digests = _imageset(paths)
    return iset, digests, FeatureCache(tmp_path / "cache")


def test_features_match_reference_and_cache_second_run(tiny) -> None:
    iset, digests, cache = tiny
    bb = _tiny_backbone()
    samples = Samples.originals(iset)
    first = extract_features(
        samples, bb, digests=digests, cache=cache, progress=False, batch_size=4
    )
    assert first.features.shape == (10, 32) and first.features.dtype == np.float32
    assert first.n_computed == 10 and first.n_cached == 0 and first.device == "cpu"
    for i, path in enumerate(iset.paths):
        want = _reference(bb, decode_resized(path, 32, bb.interpolation))
        np.testing.assert_allclose(first.features[i], want, rtol=1e-5, atol=1e-5)
    second = extract_features(
        samples, bb, digests=digests, cache=cache, progress=False, batch_size=4
    )
    assert second.n_computed == 0 and second.n_cached == 10 and second.n_decoded == 0
    assert np.array_equal(first.features, second.features)
    half = extract_features(
        samples, bb, digests=digests, cache=None, progress=False, dtype=np.float16
    )
    assert half.features.dtype == np.float16 and half.n_computed == 10


def test_alexnet_pipeline_matches_eager_fp32(tiny) -> None:
    from bench.registry import get_registry

    iset, digests, cache = tiny
    bb = get_registry().build_backbone("alexnet", weights="none")
    sub = iset.subset([0, 1, 2])
    res = extract_features(
        Samples.originals(sub), bb, digests=digests[:3], cache=cache, progress=False
    )
    for i, path in enumerate(sub.paths):
        want = _reference(bb, decode_resized(path, 227, "bilinear"))
        np.testing.assert_allclose(res.features[i], want, rtol=1e-4, atol=1e-4)


def test_interrupted_run_resumes(tiny, monkeypatch) -> None:
    """Ctrl-C during the third batch: the two finished batches reach the cache (one lane)."""
    monkeypatch.setenv("LEUKOBENCH_CPU_LANES", "1")
    iset, digests, cache = tiny
    bb = _tiny_backbone()
    samples = Samples.originals(iset)
    calls = {"n": 0}

    def interrupt_third_batch(module, args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    hook = bb.extractor.register_forward_pre_hook(interrupt_third_batch)
    with pytest.raises(KeyboardInterrupt):
        extract_features(samples, bb, digests=digests, cache=cache, progress=False, batch_size=4)
    hook.remove()
    resumed = extract_features(
        samples, bb, digests=digests, cache=cache, progress=False, batch_size=4
    )
    assert resumed.n_cached == 8 and resumed.n_computed == 2


def test_ctrl_c_with_two_lanes_keeps_finished_batches(tiny, monkeypatch) -> None:
    """A real KeyboardInterrupt in the main thread: lanes store the batch in hand, then stop."""
    import _thread

    monkeypatch.setenv("LEUKOBENCH_CPU_LANES", "2")
    iset, digests, cache = tiny
    bb = _tiny_backbone()
    samples = Samples.originals(iset)
    full = extract_features(samples, bb, digests=digests, cache=None, progress=False, batch_size=2)
    assert full.stats["lanes"] == 2
    calls = {"n": 0}

    def ctrl_c_on_first_batch(module, args):
        calls["n"] += 1
        if calls["n"] == 1:
            _thread.interrupt_main()  # what Ctrl-C does: KeyboardInterrupt in the main thread
        time.sleep(0.3)  # a slow batch: the main thread reacts while lanes hold theirs

    hook = bb.extractor.register_forward_pre_hook(ctrl_c_on_first_batch)
    with pytest.raises(KeyboardInterrupt):
        extract_features(samples, bb, digests=digests, cache=cache, progress=False, batch_size=2)
    hook.remove()
    kept = calls["n"]
    assert kept <= 4  # stopped early: the lanes finished the batches in hand, took no more
    resumed = extract_features(
        samples, bb, digests=digests, cache=cache, progress=False, batch_size=2
    )
    assert resumed.n_cached == 10 - resumed.n_computed and resumed.n_cached >= 2
    np.testing.assert_allclose(resumed.features, full.features, rtol=1e-5, atol=1e-6)


def test_failed_cache_write_stops_the_run(tiny, monkeypatch) -> None:
    iset, digests, cache = tiny
    bb = _tiny_backbone()

    def disk_full(items, backbone=""):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "put_many", disk_full)
    with pytest.raises(OSError, match="No space left"):
        extract_features(
            Samples.originals(iset), bb, digests=digests, cache=cache, progress=False, batch_size=4
        )


def test_gpu_decode_path_runs_on_cpu_tensors(tmp_path) -> None:
    """The nvjpeg branch's logic (one batched decode, per-shape resize) with CPU tensors."""
    import torch
    from PIL import Image

    from bench.extraction.device_loop import Batch, DeviceLoop
    from bench.extraction.gpu_decode import decode_into
    from bench.extraction.jobs import Setup
    from bench.extraction.sources import SourceImages

    rng = np.random.default_rng(0)
    paths = []
    for i, shape in enumerate([(40, 40), (40, 40), (24, 30)]):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (*shape, 3), dtype=np.uint8)).save(path, quality=95)
        paths.append(path)
    bb = _tiny_backbone()
    sources = SourceImages(bb, mask_fn=None, mkey="", decoded=None)
    loop = DeviceLoop(Setup(bb, "cpu", 4, 1, 1, sources), gpu_jpeg=False)
    encoded = [
        (2 - i, torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8))
        for i, p in enumerate(paths)
    ]
    x = torch.zeros((3, 3, 32, 32), dtype=torch.uint8)
    decode_into(x, encoded, 32, "bilinear")
    for i, path in enumerate(paths):
        want = torch.from_numpy(decode_resized(path, 32, "bilinear")).permute(2, 0, 1)
        diff = (x[2 - i].int() - want.int()).abs()
        assert float(diff.float().mean()) < 1.0 and int(diff.max()) <= 8, path
    out = loop.to_input(Batch([0], [0], np.zeros((1, 32, 32, 3), np.uint8), []))
    assert out.shape == (1, 3, 32, 32) and out.is_contiguous(memory_format=torch.channels_last)


def test_augmented_copies_decode_each_source_once(tiny) -> None:
    iset, digests, cache = tiny
    bb = _tiny_backbone()
    flip = Transform(kind="flip", flip=True)
    n = len(iset)
    samples = Samples(
        iset, np.concatenate([np.arange(n), np.arange(n)]), (IDENTITY,) * n + (flip,) * n
    )
    memo = DecodedImages()
    res = extract_features(
        samples, bb, digests=digests, cache=cache, progress=False, decoded=memo, batch_size=3
    )
    assert res.n_computed == 2 * n and res.n_decoded == n
    base = decode_resized(iset.paths[0], 32, "bilinear")
    np.testing.assert_allclose(res.features[n], _reference(bb, base[:, ::-1].copy()), atol=1e-5)
    assert not np.allclose(res.features[0], res.features[n])
    # another backbone with the same input size reuses the decoded images
    other = _tiny_backbone("tiny2", seed=1)
    res2 = extract_features(
        Samples.originals(iset), other, digests=digests, cache=cache, progress=False, decoded=memo
    )
    assert res2.n_computed == n and res2.n_decoded == 0 and memo.hits >= n


def test_mask_changes_features_and_key(tiny) -> None:
    iset, digests, cache = tiny
    bb = _tiny_backbone()
    samples = Samples.originals(iset)
    plain = extract_features(samples, bb, digests=digests, cache=cache, progress=False)
    masked = extract_features(
        samples, bb, digests=digests, cache=cache, progress=False, mask=[[0.5, 0.5, 1.0, 1.0]]
    )
    assert masked.n_computed == len(iset)  # a different cache key
    assert not np.allclose(plain.features, masked.features)
    again = extract_features(
        samples, bb, digests=digests, cache=cache, progress=False, mask=[[0.5, 0.5, 1.0, 1.0]]
    )
    assert again.n_computed == 0


def test_corrupt_entry_is_recomputed(tiny) -> None:
    iset, digests, cache = tiny
    bb = _tiny_backbone()
    samples = Samples.originals(iset)
    first = extract_features(samples, bb, digests=digests, cache=cache, progress=False)
    entry = next((cache.dir).rglob("*.lbp"))  # one pack per batch: damage its last vector
    blob = bytearray(entry.read_bytes())
    blob[-1] ^= 0x55
    entry.write_bytes(bytes(blob))
    with pytest.warns(CacheCorruptionWarning):
        again = extract_features(samples, bb, digests=digests, cache=cache, progress=False)
    assert again.n_computed == 1 and np.allclose(again.features, first.features, atol=1e-6)


def test_identical_files_computed_once(tmp_path: Path) -> None:
    paths = _write_images(tmp_path / "d", n=2)
    dup = paths[0].with_name("copy" + paths[0].suffix)
    dup.write_bytes(paths[0].read_bytes())
    iset, digests = _imageset([*paths, dup])
    res = extract_features(
        Samples.originals(iset), _tiny_backbone(), digests=digests, cache=None, progress=False
    )
    assert res.n_computed == 2 and np.array_equal(res.features[0], res.features[2])


def test_bad_image_is_user_error(tmp_path: Path) -> None:
    paths = _write_images(tmp_path / "d", n=2)
    paths[1].write_bytes(b"not an image")
    iset, digests = _imageset(paths)
    with pytest.raises(BadImagesError, match="cannot decode"):
        extract_features(
            Samples.originals(iset), _tiny_backbone(), digests=digests, cache=None, progress=False
        )


def test_cli_extract_and_cache(tmp_path: Path, capsys) -> None:
    from bench.cli import main
    from bench.cli.extract import load_features

    _write_images(tmp_path / "data", n=6)
    out = tmp_path / "f.npz"
    cache_dir = tmp_path / "cache"
    args = ["extract", "--backbone", "timm/resnet18", "--weights", "none"]
    args += ["--data", str(tmp_path / "data"), "--out", str(out), "--cache-dir", str(cache_dir)]
    assert main([*args, "--no-progress"]) == 0
    got = load_features(out)
    assert got["features"].shape == (6, 512) and len(got["labels"]) == 6
    assert list(got["classes"]) == ["healthy", "leukemia"] and len(got["digests"][0]) == 64
    assert got["meta"]["backbone"]["pretrained"] is False
    assert got["meta"]["extraction"]["n_computed"] == 6
    assert main([*args, "--no-progress"]) == 0
    assert load_features(out)["meta"]["extraction"]["n_cached"] == 6
    capsys.readouterr()
    assert main(["cache", "--cache-dir", str(cache_dir), "info"]) == 0
    assert "timm/resnet18" in capsys.readouterr().out
    assert (
        main(["cache", "--cache-dir", str(cache_dir), "clear", "--backbone", "timm/resnet18"]) == 0
    )
    assert "removed 6" in capsys.readouterr().out
    assert main(["extract", "--backbone", "alexnt", "--data", str(tmp_path / "data")]) == 2
    assert "did you mean 'alexnet'" in capsys.readouterr().err


def test_cli_cache_info_reads_only_and_clear_takes_what_it_says(tmp_path: Path, capsys) -> None:
    from bench.cli import main
    from bench.feature_cache import FeatureCache

    root = tmp_path / "cache"
    cache = FeatureCache(root)
    cache.put_many({"a" * 64: np.ones(4, np.float32)}, backbone="alexnet")
    cache.put_many({"b" * 64: np.ones(4, np.float32)}, backbone="alexnet")
    bad = sorted(cache.packs.iterdir())[0]
    bad.write_bytes(b"")
    (root / "runs" / "cell" / "fold-00").mkdir(parents=True)
    (root / "synthetic" / "x").mkdir(parents=True)
    base = ["cache", "--cache-dir", str(root)]
    assert main([*base, "info"]) == 0
    assert "unreadable packs" in capsys.readouterr().out
    assert bad.exists()  # info changes nothing
    assert main([*base, "clear", "--backbone", "alexnte"]) == 2  # a typo is not "removed 0"
    assert "did you mean 'alexnet'" in capsys.readouterr().err
    assert main([*base, "clear"]) == 0  # features and predictions; run state stays
    assert (root / "runs").is_dir() and not (root / "features").exists()
    capsys.readouterr()
    assert main([*base, "clear", "--runs"]) == 0
    assert not (root / "runs").exists() and (root / "synthetic").is_dir()
    assert main([*base, "clear", "--all"]) == 0
    assert not (root / "synthetic").exists()


@pytest.mark.slow
def test_compiled_forward_matches_eager(tiny, monkeypatch) -> None:
    iset, digests, _ = tiny
    bb = _tiny_backbone()
    samples = Samples.originals(iset)
    eager = extract_features(samples, bb, digests=digests, cache=None, progress=False, batch_size=4)
    monkeypatch.setenv("LEUKOBENCH_COMPILE", "1")
    comp = extract_features(samples, bb, digests=digests, cache=None, progress=False, batch_size=4)
    assert comp.stats["compiled"] and not eager.stats["compiled"]
    np.testing.assert_allclose(comp.features, eager.features, rtol=1e-4, atol=1e-5)


def _jpeg(path: Path, arr: np.ndarray, **kwargs) -> Path:
    from PIL import Image

    Image.fromarray(arr).save(path, quality=92, **kwargs)
    return path


def test_fast_decoder_is_within_two_grey_levels_and_falls_back_exactly(tmp_path) -> None:
    from PIL import Image

    from bench.data.decode import decode_resized_fast

    yy, xx = np.mgrid[0:200, 0:180]
    smooth = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    noisy = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    for name, arr in (("smooth", smooth), ("noisy", noisy)):
        path = _jpeg(tmp_path / f"{name}.jpg", arr)
        for size, mode in ((227, "bilinear"), (96, "bicubic")):
            fast = decode_resized_fast(path, size, mode).astype(int)
            exact = decode_resized(path, size, mode).astype(int)
            assert fast.shape == exact.shape == (size, size, 3)
            assert np.abs(fast - exact).max() <= 2, (name, size, mode)
    # not plain RGB JPEGs: PNG, grayscale JPEG, EXIF-rotated JPEG -> Pillow's own path
    Image.fromarray(noisy).save(tmp_path / "n.png")
    _jpeg(tmp_path / "g.jpg", noisy[..., 0])
    exif = Image.Exif()
    exif[0x0112] = 6
    _jpeg(tmp_path / "r.jpg", noisy, exif=exif)
    for name in ("n.png", "g.jpg", "r.jpg"):
        path = tmp_path / name
        assert np.array_equal(
            decode_resized_fast(path, 50, "bilinear"), decode_resized(path, 50, "bilinear")
        ), name


def test_fast_decoder_features_are_close_and_cached_apart(tmp_path) -> None:
    rng = np.random.default_rng(1)
    paths = [
        _jpeg(tmp_path / f"{i}.jpg", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
        for i in range(6)
    ]
    iset, digests = _imageset(paths)
    bb = _tiny_backbone()
    cache = FeatureCache(tmp_path / "cache")
    samples = Samples.originals(iset)
    exact = extract_features(samples, bb, digests=digests, cache=cache, progress=False)
    fast = extract_features(
        samples, bb, digests=digests, cache=cache, progress=False, decoder="fast"
    )
    assert fast.n_computed == 6 and fast.n_cached == 0  # its own cache keys
    np.testing.assert_allclose(fast.features, exact.features, atol=0.05)
    again = extract_features(
        samples, bb, digests=digests, cache=cache, progress=False, decoder="fast"
    )
    assert again.n_cached == 6 and np.array_equal(again.features, fast.features)
    with pytest.raises(UserError, match="unknown decoder"):
        extract_features(samples, bb, digests=digests, cache=None, decoder="turbo")


def test_lanes_match_one_lane_with_copies_wider_than_a_batch(tiny, monkeypatch) -> None:
    """Two lanes, five augmented copies per image, batch 2: every row computed, same features."""
    from bench.data.augment import expand

    iset, digests, _ = tiny
    bb = _tiny_backbone()
    samples = expand(iset, copies=5, seed=0)
    got = {}
    for lanes in ("1", "2"):
        monkeypatch.setenv("LEUKOBENCH_CPU_LANES", lanes)
        decoded = DecodedImages()
        res = extract_features(
            samples, bb, digests=digests, cache=None, progress=False, batch_size=2,
            decoded=decoded,
        )  # fmt: skip
        assert res.n_computed == len(samples) and res.stats["lanes"] == int(lanes)
        assert res.n_decoded == len(iset)  # a source whose copies span lanes decodes once
        got[lanes] = res.features
    np.testing.assert_allclose(got["1"], got["2"], rtol=1e-5, atol=1e-6)


def test_device_loop_on_the_cpu_matches_the_lanes(tiny, monkeypatch) -> None:
    """The producer/consumer loop CUDA and MPS use, run on the CPU: same features, packs."""
    import bench.extraction.extract as face

    iset, digests, cache = tiny
    bb = _tiny_backbone()
    samples = Samples.originals(iset)
    lanes = extract_features(samples, bb, digests=digests, cache=None, progress=False, batch_size=4)
    monkeypatch.setattr(face, "CPU_LANES", False)
    loop = extract_features(samples, bb, digests=digests, cache=cache, progress=False, batch_size=4)
    assert "lanes" not in loop.stats and loop.n_computed == 10
    np.testing.assert_allclose(loop.features, lanes.features, rtol=1e-5, atol=1e-6)
    assert cache.info()["packs"] == 3  # one pack per batch: 4 + 4 + 2
    assert set(cache.get_many(sample_keys(samples, bb, digests))) == set(
        sample_keys(samples, bb, digests)
    )
