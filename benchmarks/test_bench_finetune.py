"""Training throughput of one fine-tuning step (images/s), CPU, against the FLOP roof.

Run: ``python -m pytest benchmarks/test_bench_finetune.py --benchmark-enable``.
AlexNet's forward is ~1.43 GFLOP/image at 227 px; a training step is ~3x that,
so at ~127 GFLOP/s (2 cores, fp32) the roof is ~30 images/s. Weights are
random (``weights="none"``): speed does not depend on their values. Each case
prints its images/s and stores it in the benchmark's ``extra_info``.

The CUDA path (bf16 autocast, channels_last, fused SGD) is in
:mod:`bench.protocols.finetune` and is exercised by the ``cuda`` case only
when a GPU is present (untested on this machine: it has none).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.errors import UnknownNameError
from bench.malloc_tuning import prepare_malloc, tuned_malloc
from bench.protocols.finetune import FinetuneSettings, build_optimizer
from bench.registry import get_registry

ALEXNET_FWD_GFLOP = 1.43
CPU_GFLOPS = 127.0

prepare_malloc()  # as the command line does, before threads exist (bench/malloc_tuning.py)


@pytest.fixture(autouse=True, scope="module")
def _heap_malloc():
    """The malloc settings CPU extraction and fine-tuning run under, for bare measurements too."""
    with tuned_malloc():
        yield


def _step_fn(name: str, batch: int, channels_last: bool, device: str = "cpu", amp: str = "none"):
    try:
        backbone = get_registry().build_backbone(name, weights="none")
    except UnknownNameError:
        pytest.skip(f"backbone {name} not registered")
    dev = torch.device(device)
    model = backbone.make_finetune(2).to(dev).train()
    head = model.get_submodule(backbone.head_module) if backbone.head_module else None
    if channels_last:
        model.to(memory_format=torch.channels_last)
    settings = FinetuneSettings(batch_size=batch, amp=amp, channels_last=channels_last)
    opt = build_optimizer(model, head, settings, dev)
    size = backbone.input_size
    x = torch.randn(batch, 3, size, size, device=dev)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,), device=dev)
    crit = nn.CrossEntropyLoss()
    dtype = torch.bfloat16 if amp == "bf16" else None

    def step() -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            loss = crit(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: allocations, kernel selection
    return step


@pytest.mark.parametrize(
    "name, batch, channels_last",
    [
        ("alexnet", 5, False),
        ("alexnet", 5, True),
        ("alexnet", 32, False),
        ("alexnet", 32, True),
        ("efficientnet_lite0", 5, False),
        ("efficientnet_lite0", 32, False),
    ],
)
def test_train_step_cpu(benchmark, name, batch, channels_last):
    torch.use_deterministic_algorithms(True, warn_only=True)  # as the protocol runs on CPU
    try:
        step = _step_fn(name, batch, channels_last)
        benchmark.pedantic(step, rounds=3, iterations=1, warmup_rounds=1)
    finally:
        torch.use_deterministic_algorithms(False)
    if benchmark.stats is None:  # --benchmark-disable: ran once, nothing measured
        return
    ips = batch / benchmark.stats.stats.median
    benchmark.extra_info["images_per_s"] = round(ips, 2)
    if name == "alexnet":
        roof = CPU_GFLOPS / (3 * ALEXNET_FWD_GFLOP)
        benchmark.extra_info["roof_images_per_s"] = round(roof, 1)
        benchmark.extra_info["fraction_of_roof"] = round(ips / roof, 3)
    print(f"\n{name} batch {batch} channels_last={channels_last}: {ips:.1f} img/s")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("batch", [5, 256])
def test_train_step_cuda_bf16(benchmark, batch):
    step = _step_fn("alexnet", batch, channels_last=True, device="cuda", amp="bf16")
    benchmark.pedantic(step, rounds=20, iterations=5, warmup_rounds=3)
    if benchmark.stats is not None:
        benchmark.extra_info["images_per_s"] = round(batch / benchmark.stats.stats.median, 1)
