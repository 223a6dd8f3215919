"""Feature-extraction throughput on a CUDA GPU (skipped without one).

Run: ``python -m pytest benchmarks/test_bench_extract_cuda.py --benchmark-enable -s``
(``LEUKOBENCH_SHARED_DATA`` points at the datasets folder when it is not
``../shared/data``). Every JPEG of ``aria_all_pbs_binary`` found there is used.

* ``test_cuda_bare_forward``: bf16 autocast, channels_last, batch 256, on a
  pre-made device tensor -> images/s (the network alone).
* ``test_cuda_decode``: the same JPEG bytes held in memory, decoded (a) by PIL
  on one CPU core (decode + resize, as the CPU path) and (b) by nvjpeg on the
  GPU in batches of 256 (``torchvision.io.decode_jpeg(device="cuda")``) plus
  the batched GPU resize -> images/s each.
* ``test_cuda_end_to_end``: ``extract_features`` from the JPEG files (cold:
  nothing cached, nothing memoised), with and without writing the feature
  cache; the first run of the process and ``LEUKOBENCH_BENCH_WARMUP`` (10)
  warm-up runs are reported apart; median of nine runs after them -> images/s and the ratio to the bare forward
  (target on an H100: >= 15,000 img/s for AlexNet).
* ``test_cuda_features_match_cpu``: features of 64 images from the CUDA
  pipeline (nvjpeg + GPU resize + the plugin's autocast dtype: bf16 for
  AlexNet, fp16 for EfficientNet-Lite0) against the CPU's eager float32 ones,
  for AlexNet (random weights) and EfficientNet-Lite0 (ImageNet weights):
  relative max difference and the lowest cosine similarity.
"""

from __future__ import annotations

import io
import os
import statistics
import time

import numpy as np
import pytest
import torch

from bench.data.imageset import Samples, file_digest
from bench.data.loaders import load_imagefolder
from bench.extraction import extract_features, resize_uint8
from bench.feature_cache import FeatureCache
from bench.registry import get_registry

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
BATCH = 256
WARMUP = int(os.environ.get("LEUKOBENCH_BENCH_WARMUP", "10"))
_BARE: dict[str, float] = {}


@pytest.fixture(scope="module")
def aria():
    from tests.conftest import shared_data_dir

    path = shared_data_dir() / "aria_all_pbs_binary"
    if not path.is_dir():
        pytest.skip(f"dataset aria_all_pbs_binary not found at {path}")
    iset = load_imagefolder(path)
    return iset, [file_digest(p) for p in iset.paths]


def _backbone(name: str):
    """AlexNet with random weights (speed does not depend on them); EfficientNet-Lite0 with
    its ImageNet weights when their package is installed, else random ones (said so)."""
    from bench.errors import WeightsNotFoundError

    if name != "efficientnet_lite0":
        return get_registry().build_backbone(name, weights="none")
    try:
        return get_registry().build_backbone(name, weights="imagenet")
    except WeightsNotFoundError:
        print(f"\n{name}: ImageNet weight package not installed; random weights")
        return get_registry().build_backbone(name, weights="none")


def _sync_rate(fn, n_images: int, repeats: int = 5) -> float:
    fn()
    torch.cuda.synchronize()
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        rates.append(n_images / (time.perf_counter() - t))
    return statistics.median(rates)


@pytest.mark.parametrize("name", ["alexnet", "efficientnet_lite0"])
def test_cuda_bare_forward(benchmark, name):
    bb = _backbone(name)
    model = bb.extractor.eval().cuda().to(memory_format=torch.channels_last)
    x = torch.randn(BATCH, 3, bb.input_size, bb.input_size, device="cuda")
    x = x.contiguous(memory_format=torch.channels_last)
    steps = 40

    def run():
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            for _ in range(steps):
                model(x)

    rate = benchmark.pedantic(_sync_rate, args=(run, steps * BATCH), rounds=1, iterations=1)
    _BARE[name] = rate
    benchmark.extra_info.update(images_per_s=round(rate), batch=BATCH, device=_gpu())
    print(f"\n{name}: bare bf16 forward {rate:,.0f} img/s (batch {BATCH}, {_gpu()})")


def test_cuda_decode(benchmark, aria):
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_jpeg

    iset, _ = aria
    blobs = [p.read_bytes() for p in iset.paths if p.suffix.lower() in (".jpg", ".jpeg")]
    n_pil = min(len(blobs), 1000)
    t = time.perf_counter()
    for b in blobs[:n_pil]:
        with Image.open(io.BytesIO(b)) as im:
            np.asarray(im.convert("RGB").resize((227, 227), Image.Resampling.BILINEAR))
    pil_rate = n_pil / (time.perf_counter() - t)
    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]

    def gpu_decode():
        for i in range(0, len(tensors), BATCH):
            imgs = decode_jpeg(tensors[i : i + BATCH], mode=ImageReadMode.RGB, device="cuda")
            resize_uint8(torch.stack(imgs), 227, "bilinear")

    rate = benchmark.pedantic(_sync_rate, args=(gpu_decode, len(tensors)), rounds=1, iterations=1)
    benchmark.extra_info.update(
        pil_one_core_images_per_s=round(pil_rate), nvjpeg_images_per_s=round(rate)
    )
    print(
        f"\nJPEG decode+resize to 227: PIL one core {pil_rate:,.0f} img/s; "
        f"nvjpeg batched + GPU resize {rate:,.0f} img/s ({len(tensors)} images in memory)"
    )


@pytest.mark.parametrize("name", ["alexnet", "efficientnet_lite0"])
@pytest.mark.parametrize("with_cache", [False, True])
def test_cuda_end_to_end(benchmark, aria, tmp_path, name, with_cache):
    iset, digests = aria
    bb = _backbone(name)
    samples = Samples.originals(iset)

    def once(i: int) -> float:
        cache = FeatureCache(tmp_path / f"c{i}") if with_cache else None
        t = time.perf_counter()
        res = extract_features(
            samples, bb, digests=digests, cache=cache, device="cuda", progress=False
        )
        seconds = time.perf_counter() - t
        assert res.n_computed == len(iset) and res.stats["gpu_jpeg"]
        stats.append(res.stats)
        return len(iset) / seconds

    stats: list[dict] = []

    # warm-up: weights to the GPU, cuDNN plans, nvjpeg handles, the allocators' pools; and
    # a few seconds of steady load (on a lent H100 the first ~10 s of extractions ran
    # ~12k img/s, the same code ~18k img/s after; docs/PERFORMANCE.md)
    first = once(-1)
    warm = [once(-2 - i) for i in range(WARMUP)]
    rates = [once(i) for i in range(9)]
    rate = benchmark.pedantic(lambda: statistics.median(rates), rounds=1, iterations=1)
    bare = _BARE.get(name)
    benchmark.extra_info.update(
        images_per_s=round(rate),
        runs=[round(r) for r in rates],
        first_run_images_per_s=round(first),
        warmup_runs=[round(r) for r in warm],
        bare_images_per_s=round(bare) if bare else None,
        with_cache=with_cache,
        device=_gpu(),
    )
    ratio = f" = {rate / bare:.0%} of bare" if bare else ""
    print(
        f"\n{name}: end to end from {len(iset)} JPEG files, cache "
        f"{'written' if with_cache else 'off'}: {rate:,.0f} img/s{ratio} "
        f"(runs {', '.join(f'{r:,.0f}' for r in rates)}; first run of the process "
        f"{first:,.0f}, warm-up runs {', '.join(f'{r:,.0f}' for r in warm)}); last run: "
        f"waited for batches {stats[-1]['wait_seconds']:.3f}s, forward loop "
        f"{stats[-1]['forward_seconds']:.3f}s, pipeline {stats[-1]['compute_seconds']:.3f}s"
    )


@pytest.mark.parametrize("name", ["alexnet", "efficientnet_lite0"])
def test_cuda_features_match_cpu(benchmark, aria, name):
    iset, digests = aria
    sub = iset.subset(np.arange(0, len(iset), max(1, len(iset) // 64))[:64])
    sub_digests = [file_digest(p) for p in sub.paths]
    bb = _backbone(name)
    samples = Samples.originals(sub)
    gpu = extract_features(
        samples, bb, digests=sub_digests, cache=None, device="cuda", progress=False
    ).features
    bb.extractor.cpu()
    cpu = benchmark.pedantic(
        lambda: (
            extract_features(
                samples, bb, digests=sub_digests, cache=None, device="cpu", progress=False
            ).features
        ),
        rounds=1,
        iterations=1,
    )
    rel = float(np.abs(gpu - cpu).max() / np.abs(cpu).max())
    cos = (gpu * cpu).sum(1) / (np.linalg.norm(gpu, axis=1) * np.linalg.norm(cpu, axis=1))
    benchmark.extra_info.update(max_rel_diff=rel, min_cosine=float(cos.min()))
    print(
        f"\n{name}: CUDA (nvjpeg, GPU resize, autocast) vs CPU float32 features: "
        f"max|diff|/max|x| = {rel:.2e}, min cosine {cos.min():.5f}"
    )
    assert cos.min() > 0.99


def _gpu() -> str:
    return torch.cuda.get_device_name(0)
