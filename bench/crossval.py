"""Model 1 protocol: classifiers on cached features under k-fold cross-validation.

:func:`cross_validate` fits every (fold, classifier) pair and returns every
test prediction. Pairs are independent and run on ``n_jobs`` threads
(scikit-learn, libsvm, BLAS and xgboost release the GIL) with BLAS threads
capped at one per task by threadpoolctl so the cores are not oversubscribed; each pair's
result does not depend on scheduling, so a parallel run equals a serial one.

Estimators implementing :class:`bench.fold_fastpath.FoldFastPath` share work
across folds and classifiers (the builtin SVMs and 1-NN one Gram matrix, the
tree one presort, LDA one scatter matrix); any other scikit-learn estimator
goes through ``clone -> fit -> predict``. Fits run in parallel only while their
estimated memory fits ``memory_limit`` (:mod:`bench.memory_budget`); a free
worker starts the first pending pair that fits, so a large fit waiting for
memory does not hold up smaller ones behind it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from bench.errors import UserError
from bench.fold_fastpath import CVContext, FoldFastPath, FoldOutput, FoldView, SharedWork
from bench.malloc_tuning import prepare_malloc, trim_heap
from bench.memory_budget import start_budget


@dataclass
class FoldPrediction:
    """One classifier's predictions on one fold's test rows.

    ``score``: binary -> the positive class's score (probability when the
    estimator has ``predict_proba``, else its decision value); multi-class ->
    ``(n, k)`` probabilities, or None when the estimator has none.
    """

    fold: int
    test_index: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    score: np.ndarray | None
    fit_s: float


def _full_proba(proba: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over all ``n_classes`` labels (zeros for classes absent from training)."""
    out = np.zeros((proba.shape[0], n_classes))
    out[:, np.asarray(classes, dtype=int)] = proba
    return out


def _score(out: FoldOutput, n_classes: int, positive_index: int | None) -> np.ndarray | None:
    """The stored score of a fold (see :class:`FoldPrediction`)."""
    classes = np.asarray(out.classes)
    if out.proba is not None:
        full = _full_proba(np.asarray(out.proba, dtype=float), classes, n_classes)
        return full[:, positive_index] if positive_index is not None else full
    if positive_index is None or out.decision is None:
        return None
    decision = np.asarray(out.decision, dtype=float)
    if decision.ndim != 1 or len(classes) != 2:
        return None
    # scikit-learn's binary decision value is positive for classes_[1].
    return decision if classes[1] == positive_index else -decision


def _generic(estimator: Any, X: np.ndarray, y: np.ndarray, train, test) -> FoldOutput:
    """clone -> fit -> predict (+ predict_proba or decision_function)."""
    est = clone(estimator)
    est.fit(X[train], y[train])
    x_test = X[test]
    proba = decision = None
    if hasattr(est, "predict_proba"):
        proba = est.predict_proba(x_test)
    elif hasattr(est, "decision_function"):
        decision = est.decision_function(x_test)
    return FoldOutput(
        pred=est.predict(x_test), classes=est.classes_, proba=proba, decision=decision
    )


def fit_predict(estimator: Any, X: np.ndarray, y: np.ndarray, fold: FoldView) -> FoldOutput:
    """The estimator's fold fast path when it offers one, else the generic path."""
    if isinstance(estimator, FoldFastPath):
        out = clone(estimator).fit_predict_fold(fold, y[fold.train])
        if out is not None:
            return out
    return _generic(estimator, X, y, fold.train, fold.test)


def task_memory(estimator: Any, context: CVContext, n_train: int, n_test: int) -> int:
    """Estimated peak bytes of one fold fit (generic: copies of the fold's rows)."""
    if isinstance(estimator, FoldFastPath):
        return int(estimator.fold_memory(context, n_train, n_test))
    return 2 * (n_train + n_test) * context.n_features * context.X.itemsize


def _check(X: np.ndarray, y: np.ndarray, folds) -> None:
    if X.ndim != 2 or len(X) != len(y):
        raise UserError(
            f"features must be (n, d) with one label per row; got {X.shape} and {y.shape}"
        )
    if len(np.unique(y)) < 2:
        raise UserError("cross-validation needs at least two classes; every label is the same")
    for i, (train, test) in enumerate(folds):
        if len(np.intersect1d(train, test)):
            raise UserError(f"fold {i}: train and test indices overlap")


def cross_validate(
    X: np.ndarray,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    classifiers: dict[str, dict],
    *,
    positive_index: int | None,
    n_jobs: int = 2,
    registry: Any = None,
    progress: Callable[[str, int], None] | None = None,
    memory_limit: str | int | None = "auto",
    device: str = "cpu",
    note: Callable[[str], None] | None = None,
) -> dict[str, list[FoldPrediction]]:
    """Fit every classifier on every fold; return ``{name: [FoldPrediction per fold]}``.

    ``classifiers`` maps registry names to their options; estimators come from
    ``registry.build_classifier(name, **options)``. ``y`` holds class indices
    0..k-1; ``positive_index`` picks the binary score's class (None for
    multi-class). ``progress(name, fold)`` is called after each finished pair
    (from worker threads). ``memory_limit`` (``[run] memory_limit``: ``"auto"``,
    ``"6GB"``, bytes) bounds what fits hold at once; ``device`` is where fast
    paths may compute products (``"cpu"`` or a torch device such as ``"cuda"``);
    ``note(line)`` receives one-line notes about slower fallbacks (default: stderr).
    """
    if registry is None:
        from bench.registry import get_registry

        registry = get_registry()
    X = np.asarray(X)
    y = np.asarray(y, dtype=np.int64)
    folds = [(np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64)) for tr, te in folds]
    _check(X, y, folds)
    n_classes = int(max(y.max() + 1, 2 if positive_index is not None else 1))
    estimators = {
        name: registry.build_classifier(name, **opts) for name, opts in classifiers.items()
    }
    n_jobs = max(1, int(n_jobs))
    budget = start_budget(memory_limit, X.nbytes)  # the features (and with a limit: all held)
    context = CVContext(
        X,
        folds,
        budget=budget,
        y=y,
        device=device,
        n_jobs=n_jobs,
        note=note,
        estimators=tuple(estimators.values()),
    )
    fold_views = [FoldView(context, i, tr, te) for i, (tr, te) in enumerate(folds)]
    remaining = [len(estimators)] * len(folds)
    lock = threading.Lock()

    def need(job: tuple[int, str]) -> int:
        fold = fold_views[job[0]]
        return task_memory(estimators[job[1]], context, len(fold.train), len(fold.test))

    def ready(job: tuple[int, str]) -> bool:
        """False while another thread computes shared work this fit would wait for."""
        est = estimators[job[1]]
        if not isinstance(est, SharedWork):
            return True
        return not any(context.computing(key) for key in est.shared_keys(context))

    def fit(fi: int, name: str) -> tuple[FoldOutput, float]:
        t0 = time.perf_counter()
        try:
            out = fit_predict(estimators[name], X, y, fold_views[fi])
        except UserError:
            raise
        except (ValueError, TypeError) as exc:
            raise UserError(f"classifier {name!r} failed on fold {fi}: {exc}") from exc
        return out, time.perf_counter() - t0

    def finish(fi: int, name: str, out: FoldOutput, fit_s: float) -> FoldPrediction:
        fold = fold_views[fi]
        pred = FoldPrediction(
            fold=fi,
            test_index=fold.test,
            y_true=y[fold.test],
            y_pred=np.asarray(out.pred, dtype=np.int64),
            score=_score(out, n_classes, positive_index),
            fit_s=fit_s,
        )
        with lock:
            remaining[fi] -= 1
            if remaining[fi] == 0:
                fold.release()
        if progress is not None:
            progress(name, fi)
        return pred

    def serial(job: tuple[int, str]) -> FoldPrediction:
        with budget.hold(need(job)):
            out, fit_s = fit(*job)
        return finish(*job, out, fit_s)

    pending: list[tuple[int, str]] = []
    done: dict[tuple[int, str], FoldPrediction] = {}
    failed = threading.Event()

    def worker() -> None:
        """Take the first pending pair that fits the budget, until none is left."""
        while not failed.is_set():
            picked = budget.hold_next(pending, need, ready)
            if picked is None:
                return
            job, nbytes = picked
            try:
                out, fit_s = fit(*job)
            except BaseException:
                failed.set()
                raise
            finally:
                budget.release(nbytes)
            done[job] = finish(*job, out, fit_s)

    jobs = [(fi, name) for fi in range(len(folds)) for name in estimators]
    # One BLAS thread per task, whatever n_jobs: BLAS results can depend on its
    # thread count, and this keeps a parallel run bit-identical to a serial one.
    # (The limit is process-wide, so it is set once, around all workers.)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            if n_jobs == 1:
                results = [serial(job) for job in jobs]
            else:
                prepare_malloc()  # fit threads share one heap (bench/malloc_tuning.py)
                pending.extend(jobs)
                with ThreadPoolExecutor(max_workers=n_jobs) as pool:
                    for started in [pool.submit(worker) for _ in range(n_jobs)]:
                        started.result()
                results = [done[job] for job in jobs]
    finally:
        context.release()
        trim_heap()
    out: dict[str, list[FoldPrediction]] = {name: [] for name in estimators}
    for (_, name), res in zip(jobs, results, strict=True):
        out[name].append(res)
    return out
