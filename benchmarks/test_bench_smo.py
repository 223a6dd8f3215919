"""One SVC fold: libsvm against its replay (plugins/fast_estimators/smo.py), same kernel block.

Run: ``python -m pytest benchmarks/test_bench_smo.py --benchmark-enable -s`` (size:
``LEUKOBENCH_BENCH_N``, default 3,216 rows of ``fc7_like`` at d = 4,096, fold 0 of the
grouped 10-fold split). Per kernel (linear, rbf, cubic): ``SVC(kernel="precomputed",
cache_size=2000).fit`` on the float64 block, then :func:`fit_binary` on the same block,
alternating three times on one thread; the best of each. Both must give the same model
(support vectors, dual coefficients, ``rho``, iteration count) bit for bit, and the
replay must be at least :data:`MIN_SPEEDUP` times as fast (a ratio within one run).
"""

from __future__ import annotations

import os
import time

import numpy as np
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from benchmarks.test_bench_model1 import fc7_like, grouped_folds
from plugins.fast_estimators.gram import kernel_in_place, scale_gamma, sq_norms
from plugins.fast_estimators.svm_replay import fit_binary, replay_matches_libsvm

N = int(os.environ.get("LEUKOBENCH_BENCH_N", 3216))
MIN_SPEEDUP = 1.3


def _blocks():
    X, y, groups = fc7_like(n=N, d=4096)
    train = grouped_folds(groups)[0][0]
    x = X[train].astype(np.float64)
    gram = x @ x.T
    sq = sq_norms(x)
    gamma = scale_gamma("scale", x.shape[1], float(x.var()))
    for kind in ("linear", "rbf", "poly"):
        yield kind, kernel_in_place(kind, gram.copy(), gamma=gamma, sq_a=sq, sq_b=sq), y[train]


def test_replay_is_libsvm_and_faster(benchmark):
    assert replay_matches_libsvm()
    rows = []
    with threadpool_limits(1):
        for kind, k, y in _blocks():
            fit_binary(k[:64, :64].copy(), y[:64])  # load the compiled replay once
            best_ref = best_replay = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                ref = SVC(kernel="precomputed", cache_size=2000).fit(k, y)
                best_ref = min(best_ref, time.perf_counter() - t)
                t = time.perf_counter()
                mine = fit_binary(k, y)
                best_replay = min(best_replay, time.perf_counter() - t)
            assert np.array_equal(ref.support_, mine.support)
            assert np.array_equal(ref.dual_coef_[0], -mine.coef)
            assert np.array_equal(ref.intercept_, [mine.rho])
            assert int(ref.n_iter_[0]) == mine.n_iter
            rows.append((kind, mine.n_iter, best_ref, best_replay))
    for kind, n_iter, ref_s, replay_s in rows:
        print(
            f"{kind:7s} {n_iter:7d} iterations  libsvm {ref_s:.3f} s  replay {replay_s:.3f} s"
            f"  = {ref_s / replay_s:.2f}x"
        )
    benchmark.pedantic(lambda: None, rounds=1)
    for kind, _, ref_s, replay_s in rows:
        assert ref_s / replay_s >= MIN_SPEEDUP, kind
