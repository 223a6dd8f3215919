"""The fold fast-path contract, the memory budget and its fallbacks, torch products."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.naive_bayes import GaussianNB

from bench.crossval import cross_validate
from bench.errors import UserError
from bench.fold_fastpath import CVContext, FoldFastPath, FoldView
from bench.memory_budget import (
    MemoryBudget,
    is_auto,
    parse_memory_limit,
    resident_bytes,
    start_budget,
)
from bench.registry import get_registry
from plugins.fast_estimators.products import NumpyProducts, TorchProducts
from plugins.sklearn_classifiers import reference_estimator

PAPER_SIX = ["dt", "lda", "svm-linear", "svm-gaussian", "svm-cubic", "knn1"]


def _data(n=600, d=50, k=2, seed=0, n_folds=4):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n // 3), 3)
    y = np.repeat(rng.integers(0, k, n // 3), 3)
    centres = rng.normal(size=(k, d))
    X = np.maximum(rng.normal(size=(n, d)) + 0.6 * centres[y], 0).astype(np.float32)
    X[:, 3] = 0.0  # a constant column
    parts = np.array_split(rng.permutation(n // 3), n_folds)
    folds = []
    for p in parts:
        test = np.flatnonzero(np.isin(groups, p))
        folds.append((np.setdiff1d(np.arange(n), test), test))
    return X, y, folds


def _assert_reference(res, X, y, folds, names):
    reg = get_registry()
    for name in names:
        ref = reference_estimator(reg.build_classifier(name))
        for fp, (train, test) in zip(res[name], folds, strict=True):
            expected = clone(ref).fit(X[train], y[train]).predict(X[test])
            assert np.array_equal(fp.y_pred, expected), (name, fp.fold)


def test_builtins_declare_the_fast_path_and_others_do_not():
    reg = get_registry()
    for name in PAPER_SIX:
        assert isinstance(reg.build_classifier(name), FoldFastPath), name
    assert not isinstance(GaussianNB(), FoldFastPath)
    assert not isinstance(reg.build_classifier("logreg"), FoldFastPath)


@pytest.mark.parametrize("k", [2, 3])
def test_more_samples_than_features_takes_the_scatter_side(k):
    """n > d: LDA downdates one scatter matrix per fold; every classifier equals sklearn."""
    X, y, folds = _data(k=k, seed=k)
    res = cross_validate(
        X, y, folds, {n: {} for n in PAPER_SIX}, positive_index=1 if k == 2 else None
    )
    _assert_reference(res, X, y, folds, PAPER_SIX)
    est = get_registry().build_classifier("lda")
    train, test = folds[0]
    ctx = CVContext(X, folds, budget=MemoryBudget(2**30))
    out = clone(est).fit_predict_fold(FoldView(ctx, 0, train, test), y[train])
    assert out is not None  # the fast path itself answered (not the generic fallback)


def test_memory_limit_fallbacks_are_exact_and_noted():
    X, y, folds = _data(seed=5)
    names = ["svm-linear", "svm-gaussian", "svm-cubic", "knn1"]
    opts = {n: {} for n in names}
    full = cross_validate(X, y, folds, opts, positive_index=1)
    for limit, expect in (("5MB", "Gram matrix"), ("2MB", "libsvm's own kernel cache")):
        notes: list[str] = []
        res = cross_validate(
            X, y, folds, opts, positive_index=1, memory_limit=limit, note=notes.append
        )
        assert any(expect in line for line in notes), notes
        assert len(notes) == len(set(notes))  # each note once
        for name in names:
            for a, b in zip(full[name], res[name], strict=True):
                assert np.array_equal(a.y_pred, b.y_pred), (limit, name)
    _assert_reference(res, X, y, folds, names)


def test_an_explicit_limit_counts_what_the_process_already_holds():
    """``memory_limit = "6GB"`` bounds the process: its resident memory is taken up front."""
    held = resident_bytes()
    assert held > 10 * 2**20  # a Python process with numpy holds tens of MB at least
    assert start_budget("6GB", 1000).taken >= held + 0.05 * 6e9  # and a 5% slack
    assert start_budget("auto", 1000).taken == 1000  # auto: a share of what is still free
    assert is_auto("Auto") and is_auto(None) and not is_auto("6GB")


def test_memory_limit_values():
    assert parse_memory_limit("6GB") == 6 * 10**9
    assert parse_memory_limit("512MiB") == 512 * 2**20
    assert parse_memory_limit(10**9) == 10**9
    assert parse_memory_limit("auto") > 2**20
    for bad in ("lots", "0", "12 parsecs", True, -5):
        with pytest.raises(UserError, match="run.memory_limit"):
            parse_memory_limit(bad)


def test_bad_memory_limit_is_a_user_error_before_any_fit():
    X, y, folds = _data(seed=2)
    with pytest.raises(UserError, match="run.memory_limit"):
        cross_validate(X, y, folds, {"knn1": {}}, positive_index=1, memory_limit="lots")


def test_budget_runs_tasks_together_only_when_they_fit():
    budget = MemoryBudget(100)
    budget.take(20)
    running, peak = [0], [0]
    lock = threading.Lock()

    def task(nbytes):
        with budget.hold(nbytes):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1

    for sizes, expected in (([50, 50], 1), ([30, 30], 2), ([500], 1)):
        peak[0] = 0
        threads = [threading.Thread(target=task, args=(s,)) for s in sizes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert peak[0] == expected, sizes
    assert budget.held == 0 and budget.running == 0


def test_a_free_worker_skips_ahead_to_the_first_task_that_fits():
    """Two big tasks cannot run together; the small ones behind them run beside the first."""
    budget = MemoryBudget(120)
    pending = ["big-1", "big-2", "small-1", "small-2"]
    size = {"big-1": 70, "big-2": 70, "small-1": 20, "small-2": 20}
    started: list[str] = []
    first = budget.hold_next(pending, size.__getitem__)
    second = budget.hold_next(pending, size.__getitem__)  # big-2 does not fit beside big-1
    third = budget.hold_next(pending, size.__getitem__)
    started += [first[0], second[0], third[0]]
    assert started == ["big-1", "small-1", "small-2"] and pending == ["big-2"]
    assert budget.held == 110 and budget.running == 3  # 70 + 20 + 20 held

    got: list = []
    waiter = threading.Thread(target=lambda: got.append(budget.hold_next(pending, size.get)))
    waiter.start()
    time.sleep(0.1)
    assert got == []  # big-2 waits while big-1 runs
    budget.release(first[1])
    waiter.join(timeout=5)
    assert got == [("big-2", 70)] and pending == []
    for nbytes in (second[1], third[1], 70):
        budget.release(nbytes)
    assert budget.hold_next(pending, size.get) is None
    assert budget.held == 0 and budget.running == 0


def test_a_task_waiting_on_shared_work_is_passed_over_while_others_can_run():
    budget = MemoryBudget(1000)
    pending = ["lda-1", "svm-1", "lda-2"]
    busy = {"lda-1", "lda-2"}  # another thread computes the shared LDA solve
    size = dict.fromkeys(pending, 10)
    first = budget.hold_next(pending, size.get, lambda job: job not in busy)
    assert first == ("svm-1", 10) and pending == ["lda-1", "lda-2"]
    # nothing else left: the first that fits runs (it waits on the memo, not here)
    second = budget.hold_next(pending, size.get, lambda job: job not in busy)
    assert second == ("lda-1", 10)
    for job in (first, second):
        budget.release(job[1])


def test_the_memo_tells_when_a_value_is_being_computed():
    X, _, folds = _data(seed=3)
    ctx = CVContext(X, folds, budget=MemoryBudget(10**9))
    started, finish = threading.Event(), threading.Event()

    def slow() -> int:
        started.set()
        finish.wait(5)
        return 1

    worker = threading.Thread(target=lambda: ctx.shared("solve", slow))
    worker.start()
    started.wait(5)
    assert ctx.computing("solve") and not ctx.has_shared("solve")
    finish.set()
    worker.join(5)
    assert not ctx.computing("solve") and ctx.has_shared("solve")
    assert not ctx.computing("never-asked")


def test_a_tight_budget_gives_the_same_predictions_in_any_order():
    X, y, folds = _data(seed=9)
    names = {n: {} for n in PAPER_SIX}
    free = cross_validate(X, y, folds, names, positive_index=1, n_jobs=2)
    tight = cross_validate(X, y, folds, names, positive_index=1, n_jobs=2, memory_limit=2**21)
    for name in PAPER_SIX:
        for a, b in zip(free[name], tight[name], strict=True):
            assert a.fold == b.fold and np.array_equal(a.y_pred, b.y_pred), name
            # (the SVMs' kernels come from per-fold products here: same up to rounding)
            np.testing.assert_allclose(a.score, b.score, rtol=1e-7, atol=1e-9, err_msg=name)


def test_the_scatter_is_exactly_symmetric_and_the_same_with_any_thread_count():
    """``X.T @ X`` from the upper column blocks (mirrored): symmetric, thread-count free."""
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((700, 2300)), 0)  # three column blocks, ReLU-like
    one, two = NumpyProducts(1).scatter(x), NumpyProducts(2).scatter(x)
    assert np.array_equal(one, one.T) and np.array_equal(one, two)
    np.testing.assert_allclose(one, x.T @ x, rtol=1e-12, atol=1e-9)


def test_torch_products_equal_numpy_and_give_the_same_predictions():
    """The CUDA code path, run on torch's CPU device (no GPU needed)."""
    pytest.importorskip("torch")
    X, y, folds = _data(n=300, d=1500, seed=8)
    x64 = X.astype(np.float64)
    numpy_p, torch_p = NumpyProducts(2), TorchProducts("cpu")
    np.testing.assert_allclose(torch_p.gram(x64), numpy_p.gram(x64), rtol=1e-12)
    np.testing.assert_allclose(torch_p.scatter(x64), numpy_p.scatter(x64), rtol=1e-10)
    rows = np.arange(0, 300, 7)
    np.testing.assert_allclose(
        torch_p.cross_rows(x64, rows, np.arange(300)), numpy_p.gram(x64)[rows], rtol=1e-12
    )
    reg = get_registry()
    ctx = CVContext(X, folds, budget=MemoryBudget(2**30), device="cuda")
    ctx.shared("products", lambda: torch_p)  # what device="cuda" builds, on the CPU
    for name in ("svm-linear", "svm-gaussian", "svm-cubic", "knn1"):
        est = reg.build_classifier(name)
        for i, (train, test) in enumerate(folds):
            out = clone(est).fit_predict_fold(FoldView(ctx, i, train, test), y[train])
            ref = clone(reference_estimator(est)).fit(X[train], y[train])
            assert np.array_equal(out.pred, ref.predict(X[test])), (name, i)
