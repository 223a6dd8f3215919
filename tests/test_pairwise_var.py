"""``X[rows].var()`` replayed in place (plugins/fast_estimators/pairwise_var.py) is numpy's, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from bench.fold_fastpath import CVContext, FoldView
from bench.memory_budget import start_budget
from plugins.fast_estimators import gram
from plugins.fast_estimators.pairwise_var import replay_matches_numpy, rows_var


def test_this_numpy_sums_the_way_the_replay_does():
    assert replay_matches_numpy()


@pytest.mark.parametrize("seed", range(6))
def test_rows_var_equals_numpy_var(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n, d = int(rng.integers(1, 150)), int(rng.integers(1, 260))
        x = rng.standard_normal((n + 9, d)) * 10.0 ** rng.uniform(-8, 8)
        if seed % 2:
            x = np.maximum(x, 0.0)  # ReLU features: most values exactly zero
        if seed % 3 == 0:
            x = np.round(x, 1)
        rows = rng.choice(n + 9, size=n, replace=bool(seed == 5))  # any order, repeats too
        assert rows_var(x, rows) == x[rows].var()


def test_large_folds_whose_leaves_cross_rows():
    rng = np.random.default_rng(7)
    x = np.maximum(rng.standard_normal((700, 1531)), 0.0).astype(np.float32).astype(np.float64)
    for rows in (
        np.arange(700),
        np.sort(rng.choice(700, 613, replace=False)),
        np.arange(699, 0, -2),
    ):
        assert rows_var(x, rows) == x[rows].var()


def test_constant_and_empty_selections():
    x = np.full((5, 3), 2.5)
    assert rows_var(x, np.array([0, 3])) == x[[0, 3]].var() == 0.0
    assert np.isnan(rows_var(x, np.array([], dtype=np.int64)))


def test_rows_out_of_range_are_refused():
    x = np.ones((4, 3))
    for rows in (np.array([0, 4]), np.array([-1, 2])):
        with pytest.raises(IndexError, match="row indices"):
            rows_var(x, rows)


def _fold(X, train, test):
    ctx = CVContext(X, [(train, test)], budget=start_budget("auto", X.nbytes), y=np.zeros(len(X)))
    return ctx, FoldView(ctx, 0, train, test)


def test_fold_x_var_replays_large_data_and_copies_small_data():
    rng = np.random.default_rng(3)
    train, test = np.arange(0, 600, 1), np.arange(600, 650)
    big = rng.random((650, gram.REPLAY_MIN_VALUES // 600 + 1)).astype(np.float32)
    small = big[:, :40]
    for X, copies in ((big, False), (small, True)):
        ctx, fold = _fold(X, train, test)
        assert gram.var_copies(ctx) is copies
        assert gram.fold_x_var(fold) == X[train].astype(np.float64).var()
