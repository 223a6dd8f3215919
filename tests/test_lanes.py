"""The CPU lane scheduler: lane counts, batch plans, the normaliser, thread counts."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from bench.errors import UserError
from bench.extraction.cpu_lanes import BatchPlan, cpu_lanes, torch_threads
from bench.extraction.normalise import Normaliser


def test_two_lanes_split_the_threads(monkeypatch) -> None:
    monkeypatch.delenv("LEUKOBENCH_CPU_LANES", raising=False)
    assert cpu_lanes(1) == (1, 1)
    assert cpu_lanes(2) == (2, 1)
    assert cpu_lanes(16) == (2, 8)
    assert cpu_lanes(3) == (2, 1)


def test_lane_count_override(monkeypatch) -> None:
    monkeypatch.setenv("LEUKOBENCH_CPU_LANES", "1")
    assert cpu_lanes(8) == (1, 8)
    monkeypatch.setenv("LEUKOBENCH_CPU_LANES", "4")
    assert cpu_lanes(8) == (4, 2)
    assert cpu_lanes(2) == (2, 1)  # never more lanes than threads
    monkeypatch.setenv("LEUKOBENCH_CPU_LANES", "many")
    with pytest.raises(UserError, match="LEUKOBENCH_CPU_LANES"):
        cpu_lanes(2)


def _drain(plan: BatchPlan) -> list[list[int]]:
    out = []
    while part := plan.take():
        out.append(part)
    return out


def test_plan_hands_out_whole_jobs_in_order() -> None:
    sizes = [1, 3, 2, 2, 1, 3, 1]
    batches = _drain(BatchPlan(list(range(7)), sizes, 4, 1))
    assert [j for b in batches for j in b] == list(range(7))
    assert all(sum(sizes[j] for j in b) <= 4 for b in batches)
    assert batches[0] == [0, 1]  # 1 + 3 fills the batch; job 2 waits for the next


def test_guided_tail_shrinks_batches_so_lanes_end_together() -> None:
    plan = BatchPlan(list(range(100)), [1] * 100, 32, 2)
    sizes = [len(b) for b in _drain(plan)]
    assert sum(sizes) == 100
    assert sizes[:2] == [32, 32] and max(sizes[2:]) < 32 and min(sizes[:-1]) >= 16
    fixed = [len(b) for b in _drain(BatchPlan(list(range(100)), [1] * 100, 32, 2, guided=False))]
    assert fixed == [32, 32, 32, 4]


def test_plan_refuses_jobs_bigger_than_a_batch() -> None:
    with pytest.raises(ValueError, match="split it first"):
        BatchPlan([0], [5], 4, 2)


def test_plan_is_thread_safe() -> None:
    plan = BatchPlan(list(range(5000)), [1] * 5000, 7, 4)
    got: list[int] = []
    lock = threading.Lock()

    def lane() -> None:
        while part := plan.take():
            with lock:
                got.extend(part)

    threads = [threading.Thread(target=lane) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(5000))


def test_normaliser_equals_per_channel_addcmul() -> None:
    rng = np.random.default_rng(0)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    norm = Normaliser(mean, std)
    m, s = torch.tensor(mean), torch.tensor(std)
    for _ in range(5):
        img = rng.integers(0, 256, (37, 37, 3), dtype=np.uint8)
        out = torch.empty(37, 37, 3)
        norm.into(out, img)
        want = torch.addcmul(-m / s, torch.from_numpy(img), 1.0 / (255.0 * s))
        assert torch.equal(out, want)  # the same arithmetic, bit for bit
        np.testing.assert_allclose(out.numpy(), (img / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)


def test_torch_threads_restores_the_count() -> None:
    before = torch.get_num_threads()
    seen = {}
    with torch_threads(1):
        assert torch.get_num_threads() == 1

        def probe() -> None:
            seen["n"] = torch.get_num_threads()

        t = threading.Thread(target=probe)
        t.start()
        t.join()
    assert torch.get_num_threads() == before
    assert seen["n"] == 1  # threads started inside inherit the count
    t = threading.Thread(target=probe)
    t.start()
    t.join()
    assert seen["n"] == before  # and threads started after get the restored one
