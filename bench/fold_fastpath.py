"""The fold fast-path contract: how a classifier can share work across cross-validation folds.

Under k-fold cross-validation every fold sees sub-blocks of the same data, so
a classifier can compute something once per run (a Gram matrix, a presort of
every feature, a scatter matrix) and reuse it in every fold. A classifier
opts in by implementing :class:`FoldFastPath` (a ``typing.Protocol``; plain
duck typing, no base class needed); :func:`bench.crossval.cross_validate`
checks ``isinstance(estimator, FoldFastPath)`` and otherwise goes through
scikit-learn's ``clone -> fit -> predict``.

The engine hands the fast path a :class:`FoldView` (this fold's rows) whose
:class:`CVContext` holds the whole run: the features, the memory budget, the
device for products, and a thread-safe memo (:meth:`CVContext.shared`) where
a plugin keeps what it computed once. The engine knows nothing about what is
in the memo. See docs/plugins.md ("Fold fast paths").
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from bench.memory_budget import MemoryBudget

T = TypeVar("T")


@dataclass
class FoldOutput:
    """What an estimator's ``predict``/``predict_proba``/``decision_function`` would give.

    ``pred`` holds class labels; ``proba`` is ``(n, len(classes))`` or None;
    ``decision`` is ``(n,)`` (binary) or ``(n, k)`` or None; ``classes`` are the
    fitted ``classes_``.
    """

    pred: np.ndarray
    classes: np.ndarray
    proba: np.ndarray | None = None
    decision: np.ndarray | None = None


class _Memo:
    """Values computed once per key, thread-safe (one lock per key)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Hashable, list[Any]] = {}

    def get(self, key: Hashable, factory: Callable[[], T]) -> T:
        with self._lock:
            entry = self._entries.setdefault(key, [threading.Lock(), False, None])
        with entry[0]:
            if not entry[1]:
                entry[2] = factory()
                entry[1] = True
            return entry[2]

    def has(self, key: Hashable) -> bool:
        with self._lock:
            entry = self._entries.get(key)
            return entry is not None and entry[1]

    def busy(self, key: Hashable) -> bool:
        """Whether some thread is computing ``key`` now."""
        with self._lock:
            entry = self._entries.get(key)
            return entry is not None and not entry[1] and entry[0].locked()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class CVContext:
    """One :func:`~bench.crossval.cross_validate` call, as fast paths see it.

    ``X`` is the feature matrix as given (n x d, usually float32); ``y`` the
    labels of its rows (class indices, or None), so that a fast path solving
    several folds at once can read each fold's training labels; ``folds``
    the ``(train, test)`` index pairs; ``budget`` the run's
    :class:`~bench.memory_budget.MemoryBudget` (``memory_limit`` bytes);
    ``device`` where products may run (``"cpu"``: NumPy's BLAS; ``"cuda"``,
    ``"cuda:1"``, ...: torch on that device); ``n_jobs`` the parallel fits;
    ``estimators`` every estimator of the run, so that a fast path can tell
    whether what it could share will be built anyway (1-NN streams its
    distances unless an SVM of the run holds the whole Gram matrix).
    """

    def __init__(
        self,
        X: np.ndarray,
        folds: list[tuple[np.ndarray, np.ndarray]],
        *,
        budget: MemoryBudget,
        y: np.ndarray | None = None,
        device: str = "cpu",
        n_jobs: int = 1,
        note: Callable[[str], None] | None = None,
        estimators: tuple[Any, ...] = (),
    ) -> None:
        self.X = X
        self.y = y
        self.estimators = estimators
        self.folds = folds
        self.budget = budget
        self.device = device
        self.n_jobs = n_jobs
        self._note = note
        self._notes: set[str] = set()
        self._notes_lock = threading.Lock()
        self._memo = _Memo()

    @property
    def memory_limit(self) -> int:
        return self.budget.limit

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def shared(self, key: Hashable, factory: Callable[[], T]) -> T:
        """``factory()`` computed once per ``key`` for the whole run (thread-safe)."""
        return self._memo.get(key, factory)

    def has_shared(self, key: Hashable) -> bool:
        """Whether :meth:`shared` already holds a value for ``key``."""
        return self._memo.has(key)

    def computing(self, key: Hashable) -> bool:
        """Whether a thread is computing :meth:`shared`'s value for ``key`` right now."""
        return self._memo.busy(key)

    def note(self, message: str) -> None:
        """Tell the user once (one line) that a slower or different path was taken."""
        with self._notes_lock:
            if message in self._notes:
                return
            self._notes.add(message)
        if self._note is not None:
            self._note(message)
        else:
            print(message, file=sys.stderr)

    def release(self) -> None:
        """Drop everything memoised (the run is over)."""
        self._memo.clear()


class FoldView:
    """One fold: its ``train``/``test`` rows of ``context.X`` and a memo released when it is done."""

    def __init__(self, context: CVContext, index: int, train: np.ndarray, test: np.ndarray):
        self.context = context
        self.index = index
        self.train = train
        self.test = test
        self._memo = _Memo()

    @property
    def n_features(self) -> int:
        return self.context.n_features

    def x_train(self) -> np.ndarray:
        return self.context.X[self.train]

    def x_test(self) -> np.ndarray:
        return self.context.X[self.test]

    def shared(self, key: Hashable, factory: Callable[[], T]) -> T:
        """``factory()`` computed once per ``key`` for this fold (dropped by :meth:`release`)."""
        return self._memo.get(key, factory)

    def release(self) -> None:
        """Drop this fold's memo (every classifier of the fold is done)."""
        self._memo.clear()


@runtime_checkable
class FoldFastPath(Protocol):
    """A classifier that fits a cross-validation fold from work shared across folds.

    * ``check_params()`` raises ``ValueError``/``TypeError`` on an option value
      the estimator would reject (called when it is built, so a suite fails early);
    * ``reference()`` returns the plain scikit-learn estimator whose
      predictions this one reproduces (what tests and benchmarks compare with);
    * ``fold_memory(context, n_train, n_test)`` estimates the peak bytes one
      fold fit adds beyond what is shared (the engine runs fits in parallel
      only while their estimates fit the budget);
    * ``fit_predict_fold(fold, y_train)`` fits on ``fold.train`` rows with
      labels ``y_train`` and predicts ``fold.test`` rows, or returns None for
      "use the ordinary ``clone -> fit -> predict``".

    Fast paths must give the predictions ``fit`` + ``predict`` would give.
    """

    def check_params(self) -> None: ...

    def reference(self) -> Any: ...

    def fold_memory(self, context: CVContext, n_train: int, n_test: int) -> int: ...

    def fit_predict_fold(self, fold: FoldView, y_train: np.ndarray) -> FoldOutput | None: ...


@runtime_checkable
class SharedWork(Protocol):
    """Optional, for a fold fast path: the run-wide memo keys its fold fits wait on.

    ``shared_keys(context)`` lists the :meth:`CVContext.shared` keys whose values
    ``fit_predict_fold`` computes or reads (a presort, a Gram matrix, a solve for all
    folds). While another thread computes one of them, the engine starts other pending
    fits first instead of one that would only wait. Scheduling only: results never
    depend on the order in which fits run.
    """

    def shared_keys(self, context: CVContext) -> tuple[Hashable, ...]: ...


@runtime_checkable
class FitSizeNote(Protocol):
    """Optional, for any classifier: what to tell a user before fitting folds this large.

    ``fit_size_note(n_train, n_features)`` returns one line (e.g. "an exact SVM
    on 18,000 training rows can take hours; the approximation X is faster") or
    None. ``run --dry-run`` prints it for the largest training fold of each table,
    so a user sees it before any image is read.
    """

    def fit_size_note(self, n_train: int, n_features: int) -> str | None: ...
