"""CPU lanes run full batches in chunks of 16 only where the bits are the same as whole."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.backbone import RuntimeHints
from bench.data.imageset import Samples, file_digest
from bench.data.loaders import load_imagefolder
from bench.errors import UserError
from bench.extraction import chunking, extract_features
from bench.extraction.chunking import (
    ChunkedForward,
    VerdictStore,
    chunk_rows,
    chunks_identical,
    forget_verdicts,
    verdict_key,
)
from bench.registry import get_registry


@pytest.fixture(autouse=True)
def _no_memo():
    forget_verdicts()
    yield
    forget_verdicts()


class _Spy:
    """A per-row network that records the batch sizes it saw and how many ran at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.delay = delay
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with self._lock:
            self.sizes.append(int(x.shape[0]))
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.delay)
        with self._lock:
            self.running -= 1
        return x.flatten(1)[:, :4] * 2.0


CHUNK = 16


class _Backbone:
    name, layer, input_size = "spy", "", 8
    hints = RuntimeHints(cpu_forward_chunk=CHUNK)


class _Whole(_Backbone):
    hints = RuntimeHints()


def test_full_batches_are_chunked_others_run_whole() -> None:
    spy = _Spy()
    fwd = ChunkedForward(spy, CHUNK)
    x = torch.randn(48, 3, 8, 8)
    out = fwd(x)
    assert spy.sizes == [16, 16, 16] and torch.equal(out, spy(x))
    spy.sizes.clear()
    fwd(torch.randn(24, 3, 8, 8))  # not a multiple: whole, its bits depend on the size
    fwd(torch.randn(10, 3, 8, 8))
    assert spy.sizes == [24, 10]
    spy.sizes.clear()
    ChunkedForward(spy, None)(torch.randn(32, 3, 8, 8))
    assert spy.sizes == [32]


def test_tail_batches_run_one_at_a_time() -> None:
    spy = _Spy(delay=0.05)
    fwd = ChunkedForward(spy, CHUNK)
    x = torch.randn(24, 3, 8, 8)

    def run(tail: bool) -> None:
        threads = [threading.Thread(target=fwd, args=(x,), kwargs={"tail": tail}) for _ in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()

    run(tail=True)
    assert spy.most == 1
    run(tail=False)  # full-target batches of an odd size (augmented copies) keep running together
    assert spy.most > 1


def test_probe_catches_batch_dependent_networks() -> None:
    assert chunks_identical(_Spy(), 32, CHUNK, 8)

    def batch_statistics(x: torch.Tensor) -> torch.Tensor:  # like BatchNorm in train mode
        return (x - x.mean(dim=0, keepdim=True)).flatten(1)[:, :4]

    assert not chunks_identical(batch_statistics, 32, CHUNK, 8)


def test_chunk_rows_probes_once_and_keeps_the_verdict(tmp_path: Path) -> None:
    spy = _Spy()
    args = dict(batch_size=32, threads=1, root=tmp_path)
    assert chunk_rows(spy, _Backbone(), n_images=10, **args) is None  # too small to probe
    assert spy.sizes == []
    assert chunk_rows(spy, _Backbone(), n_images=10_000, **args) == CHUNK
    assert spy.sizes == [32, 16, 16]
    stored = json.loads((tmp_path / chunking.FILE_NAME).read_text())
    assert stored["verdicts"] == {verdict_key(_Backbone(), 32, CHUNK, 1): True}
    forget_verdicts()  # a new process: the file answers, no probe
    spy.sizes.clear()
    assert chunk_rows(spy, _Backbone(), n_images=10, **args) == CHUNK
    assert spy.sizes == []
    # a backbone without the hint runs whole; another thread count or batch size is another question
    assert chunk_rows(spy, _Whole(), n_images=10_000, **args) is None
    assert (
        chunk_rows(spy, _Backbone(), n_images=10, batch_size=32, threads=2, root=tmp_path) is None
    )
    assert (
        chunk_rows(spy, _Backbone(), n_images=10_000, batch_size=24, threads=1, root=tmp_path)
        is None
    )


def test_a_negative_verdict_keeps_batches_whole(tmp_path: Path) -> None:
    key = verdict_key(_Backbone(), 32, CHUNK, 1)
    VerdictStore(tmp_path).put(key, False)
    forget_verdicts()
    spy = _Spy()
    assert (
        chunk_rows(spy, _Backbone(), batch_size=32, threads=1, n_images=10_000, root=tmp_path)
        is None
    )
    assert spy.sizes == []


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"schema": 99, "verdicts": {}}', '{"schema": 1, "verdicts": []}'],
)
def test_unreadable_verdicts_mean_probing_again(tmp_path: Path, text: str) -> None:
    (tmp_path / chunking.FILE_NAME).write_text(text)
    spy = _Spy()
    assert (
        chunk_rows(spy, _Backbone(), batch_size=32, threads=1, n_images=10_000, root=tmp_path)
        == CHUNK
    )
    assert spy.sizes == [32, 16, 16]
    assert json.loads((tmp_path / chunking.FILE_NAME).read_text())["schema"] == 1


def test_non_boolean_verdicts_are_not_trusted(tmp_path: Path) -> None:
    key = verdict_key(_Backbone(), 32, CHUNK, 1)
    (tmp_path / chunking.FILE_NAME).write_text(json.dumps({"schema": 1, "verdicts": {key: "yes"}}))
    assert VerdictStore(tmp_path).get(key) is None


def test_switch_off_and_bad_value(monkeypatch, tmp_path: Path) -> None:
    spy = _Spy()
    monkeypatch.setenv("LEUKOBENCH_FORWARD_CHUNK", "0")
    assert (
        chunk_rows(spy, _Backbone(), batch_size=32, threads=1, n_images=10_000, root=tmp_path)
        is None
    )
    assert spy.sizes == [] and not (tmp_path / chunking.FILE_NAME).exists()
    monkeypatch.setenv("LEUKOBENCH_FORWARD_CHUNK", "sometimes")
    with pytest.raises(UserError, match="LEUKOBENCH_FORWARD_CHUNK"):
        chunk_rows(spy, _Backbone(), batch_size=32, threads=1, n_images=10_000, root=tmp_path)


def test_lanes_on_real_images_give_the_same_bits(dataset_dir, tmp_path: Path, monkeypatch) -> None:
    """EfficientNet-Lite0 (ImageNet weights) on 112 Aria images: 3 full batches + a 24 + 24 tail."""
    aria = dataset_dir("aria_all_pbs_binary")
    root = tmp_path / "aria112"
    for cls in ("healthy", "leukemia"):
        (root / cls).mkdir(parents=True)
        for p in sorted((aria / cls).iterdir())[:56]:
            (root / cls / p.name).symlink_to(p)
    iset = load_imagefolder(root)
    samples = Samples.originals(iset)
    digests = [file_digest(p) for p in iset.paths]
    bb = get_registry().build_backbone("efficientnet_lite0")
    monkeypatch.setenv("LEUKOBENCH_CPU_LANES", "2")
    monkeypatch.setenv("LEUKOBENCH_COMPILE", "0")
    kw = dict(digests=digests, progress=False, batch_size=32, device="cpu")
    monkeypatch.setenv("LEUKOBENCH_FORWARD_CHUNK", "0")
    whole = extract_features(samples, bb, cache=None, **kw)
    assert whole.stats["forward_chunk"] == 32
    monkeypatch.setenv("LEUKOBENCH_FORWARD_CHUNK", "auto")
    monkeypatch.setattr(chunking, "PROBE_MIN_IMAGES", 0)
    from bench.feature_cache import FeatureCache

    chunked = extract_features(samples, bb, cache=FeatureCache(tmp_path / "cache"), **kw)
    verdicts = json.loads((tmp_path / "cache" / chunking.FILE_NAME).read_text())["verdicts"]
    (same,) = verdicts.values()
    assert chunked.stats["forward_chunk"] == (CHUNK if same else 32)
    assert chunked.features.tobytes() == whole.features.tobytes()
    assert np.isfinite(chunked.features).all() and chunked.n_computed == 112
