"""The CUDA JPEG pipeline (bench/extraction/jpeg_pipeline.py), run on the CPU with torchvision's
decoder."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bench.extraction.extract as face
import bench.extraction.jpeg_pipeline as gp
from bench.data.decode import decode_resized
from bench.data.imageset import IDENTITY, Samples, Transform
from bench.errors import BadImagesError, UserError
from bench.extraction import extract_features, sample_keys
from bench.extraction.collector import Collector
from bench.extraction.jobs import Work
from bench.extraction.jpeg_bytes import exif_orientation, is_gpu_decodable, read_file
from bench.feature_cache import FeatureCache
from tests.test_features import _imageset, _reference, _tiny_backbone


def _smooth(seed: int, h: int = 48, w: int = 56) -> np.ndarray:
    """A smooth picture (resizers agree on it to a level or two, unlike on noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = [
        127 + 100 * np.sin(xx / rng.uniform(4, 9) + rng.uniform(0, 6)) * np.cos(yy / 7.0)
        for _ in range(3)
    ]
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


def _jpegs(folder: Path, n: int = 9) -> list[Path]:
    paths = []
    for i in range(n):
        cls = folder / ("healthy" if i % 2 else "leukemia")
        cls.mkdir(parents=True, exist_ok=True)
        path = cls / f"im{i:02d}.jpg"
        Image.fromarray(_smooth(i)).save(path, quality=95)
        paths.append(path)
    return paths


@pytest.fixture
def direct(monkeypatch):
    monkeypatch.setattr(face, "JPEG_DIRECT_DEVICES", ("cuda", "cpu"))
    monkeypatch.setattr(face, "CPU_LANES", False)


def _exif_jpeg(path: Path, img: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(img).save(path, quality=95, exif=exif.tobytes())


def test_exif_orientation_and_what_the_gpu_may_decode(tmp_path: Path) -> None:
    img = _smooth(0)
    for orientation in (1, 3, 6, 8):
        _exif_jpeg(tmp_path / f"o{orientation}.jpg", img, orientation)
        buf = read_file(tmp_path / f"o{orientation}.jpg")
        assert exif_orientation(buf) == orientation
        assert is_gpu_decodable(buf) == (orientation == 1)
    plain = io.BytesIO()
    Image.fromarray(img).save(plain, format="JPEG")
    assert exif_orientation(plain.getvalue()) == 1 and is_gpu_decodable(plain.getvalue())
    png = io.BytesIO()
    Image.fromarray(img).save(png, format="PNG")
    assert not is_gpu_decodable(png.getvalue())
    # cut-off or nonsense headers read as upright, never raise
    for junk in (b"\xff\xd8\xff\xe1\x00", b"\xff\xd8\xff\xe1\x00\x20Exif\x00\x00II*\x00", b""):
        assert exif_orientation(junk) == 1


def test_pipeline_matches_the_cpu_path_and_writes_one_pack_per_batch(tmp_path, direct) -> None:
    iset, digests = _imageset(_jpegs(tmp_path / "data"))
    bb = _tiny_backbone()
    samples = Samples.originals(iset)
    cache = FeatureCache(tmp_path / "cache")
    res = extract_features(
        samples, bb, digests=digests, cache=cache, progress=False, device="cpu", batch_size=4
    )
    assert res.stats["pipeline"] == "jpeg-direct" and res.stats["gpu_jpeg"]
    assert res.n_computed == 9 and res.n_decoded == 0  # all decoded by torchvision, none by PIL
    for row, path in enumerate(iset.paths):
        want = _reference(bb, decode_resized(path, 32, "bilinear"))
        got = res.features[row]
        assert np.abs(got - want).max() <= 0.05 * np.abs(want).max() + 1e-3, path
    assert cache.info()["packs"] == 3  # 4 + 4 + 1
    assert set(cache.get_many(sample_keys(samples, bb, digests))) == set(
        sample_keys(samples, bb, digests)
    )
    again = extract_features(
        samples, bb, digests=digests, cache=cache, progress=False, device="cpu"
    )
    assert again.n_computed == 0
    np.testing.assert_array_equal(again.features, res.features)


def test_other_formats_and_rotated_jpegs_are_decoded_on_the_cpu(tmp_path, direct) -> None:
    paths = _jpegs(tmp_path / "data", 4)
    Image.fromarray(_smooth(7)).save(paths[1], format="PNG")  # a PNG named .jpg
    _exif_jpeg(paths[2], _smooth(8), 6)  # needs a 90-degree turn
    iset, digests = _imageset(paths)
    bb = _tiny_backbone()
    res = extract_features(
        Samples.originals(iset),
        bb,
        digests=digests,
        cache=None,
        progress=False,
        device="cpu",
        batch_size=3,
    )
    assert res.stats["pipeline"] == "jpeg-direct" and res.n_decoded == 2
    for row in (1, 2):  # exactly the CPU path's pixels
        want = _reference(bb, decode_resized(paths[row], 32, "bilinear"))
        np.testing.assert_allclose(res.features[row], want, rtol=1e-5, atol=1e-5)


def test_a_broken_jpeg_is_named(tmp_path, direct) -> None:
    paths = _jpegs(tmp_path / "data", 3)
    paths[1].write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)  # JPEG magic, nothing behind it
    iset, digests = _imageset(paths)
    with pytest.raises(BadImagesError) as err:
        extract_features(
            Samples.originals(iset),
            _tiny_backbone(),
            digests=digests,
            cache=None,
            progress=False,
            device="cpu",
        )
    assert str(paths[1]) in str(err.value)


def test_a_vanished_file_is_named(tmp_path, direct) -> None:
    paths = _jpegs(tmp_path / "data", 3)
    iset, digests = _imageset(paths)
    paths[2].unlink()
    with pytest.raises(BadImagesError, match="cannot read") as err:
        extract_features(
            Samples.originals(iset),
            _tiny_backbone(),
            digests=digests,
            cache=None,
            progress=False,
            device="cpu",
        )
    assert str(paths[2]) in str(err.value)


def test_augmented_copies_and_the_opt_out_take_the_general_loop(
    tmp_path, direct, monkeypatch
) -> None:
    iset, digests = _imageset(_jpegs(tmp_path / "data", 4))
    bb = _tiny_backbone()
    flip = Transform(kind="flip", flip=True)
    copies = Samples(iset, np.array([0, 1, 2, 3, 0]), (IDENTITY,) * 4 + (flip,))
    res = extract_features(copies, bb, digests=digests, cache=None, progress=False, device="cpu")
    assert "pipeline" not in res.stats
    monkeypatch.setenv("LEUKOBENCH_GPU_PIPELINE", "classic")
    res = extract_features(
        Samples.originals(iset), bb, digests=digests, cache=None, progress=False, device="cpu"
    )
    assert "pipeline" not in res.stats
    monkeypatch.setenv("LEUKOBENCH_GPU_PIPELINE", "fastest")
    with pytest.raises(UserError, match="LEUKOBENCH_GPU_PIPELINE"):
        extract_features(
            Samples.originals(iset), bb, digests=digests, cache=None, progress=False, device="cpu"
        )


def test_ctrl_c_keeps_the_batch_already_computed(tmp_path, direct, monkeypatch) -> None:
    iset, digests = _imageset(_jpegs(tmp_path / "data", 9))
    bb = _tiny_backbone()
    cache = FeatureCache(tmp_path / "cache")
    real = gp.JpegPipeline.to_device
    calls = {"n": 0}

    def interrupt_third(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(gp.JpegPipeline, "to_device", interrupt_third)
    samples = Samples.originals(iset)
    with pytest.raises(KeyboardInterrupt):
        extract_features(
            samples, bb, digests=digests, cache=cache, progress=False, device="cpu", batch_size=3
        )
    assert len(cache.get_many(sample_keys(samples, bb, digests))) == 6  # batches 1 and 2
    monkeypatch.setattr(gp.JpegPipeline, "to_device", real)
    res = extract_features(samples, bb, digests=digests, cache=cache, progress=False, device="cpu")
    assert res.n_cached == 6 and res.n_computed == 3
    assert torch.get_num_threads() >= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (nvjpeg)")
def test_on_cuda_both_loops_agree_with_the_cpu(tmp_path: Path) -> None:
    paths = _jpegs(tmp_path / "data", 6)
    Image.fromarray(_smooth(7)).save(paths[1], format="PNG")  # a PNG named .jpg
    _exif_jpeg(paths[2], _smooth(8), 6)
    iset, digests = _imageset(paths)
    bb = _tiny_backbone()
    flip = Transform(kind="flip", flip=True)
    want = np.stack([_reference(bb, decode_resized(p, 32, "bilinear")) for p in paths])
    bb.extractor.cuda()
    direct = extract_features(
        Samples.originals(iset), bb, digests=digests, cache=None, device="cuda", progress=False
    )
    assert direct.stats["pipeline"] == "jpeg-direct" and direct.n_decoded == 2
    copies = Samples(iset, np.array([0, 1, 2, 3, 4, 5, 0]), (IDENTITY,) * 6 + (flip,))
    loop = extract_features(copies, bb, digests=digests, cache=None, device="cuda", progress=False)
    assert "pipeline" not in loop.stats
    for got in (direct.features, loop.features[:6]):
        assert np.abs(got - want).max() <= 0.05 * np.abs(want).max() + 1e-2


def test_collector_keeps_one_batch_in_flight_and_rescues_it(tmp_path) -> None:
    """With an event (CUDA) a batch is taken when the next is launched, at the end, or on Ctrl-C."""

    class Event:
        waited = 0

        def synchronize(self) -> None:
            Event.waited += 1

    keys = [f"k{i}" for i in range(6)]
    todo = {k: [i] for i, k in enumerate(keys)}
    features = np.zeros((6, 2), np.float32)
    cache = FeatureCache(tmp_path)
    collect = Collector(Work([], keys, todo, features, cache, False, "bb"), "bb")
    batch = [torch.full((2, 2), float(b + 1)) for b in range(3)]
    collect.push([0, 1], batch[0], Event())
    assert collect.done == 0 and not features.any()  # still in flight
    collect.push([2, 3], batch[1], Event())
    assert collect.done == 2 and Event.waited == 1 and features[:2].tolist() == [[1, 1], [1, 1]]
    collect.rescue()  # Ctrl-C: the batch in flight is kept
    assert collect.done == 4 and features[2:4].tolist() == [[2, 2], [2, 2]]
    collect.push([4, 5], batch[2], None)  # no event (CPU, MPS): taken at once
    assert collect.done == 6 and features[4:].tolist() == [[3, 3], [3, 3]]
    collect.close()
    collect.check(wait=True)
    assert set(cache.get_many(keys)) == set(keys)  # one pack per batch, all written
    assert cache.info()["packs"] == 3
