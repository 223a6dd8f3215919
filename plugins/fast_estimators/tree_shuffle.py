"""The tree splitter's feature visit order: scikit-learn's Fisher-Yates over its
``features`` array driven by the xorshift ``rand_r`` state, replayed lazily.

Only simulated when features tie exactly (see :mod:`.tree_builder`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

RAND_R_MAX = 0x7FFFFFFF


@njit(nogil=True, cache=True)
def shuffle_visits(state, features, constant, rank):  # pragma: no cover - compiled
    """One split search's Fisher-Yates over ``features`` (in place); returns the new state.

    ``state``: ``np.uint64`` holding the 32-bit ``rand_r`` state. ``rank[f]`` becomes the
    visit position of non-constant feature ``f`` (``d`` otherwise).
    scikit-learn's ``our_rand_r`` xorshift, ``rand_int(lo, hi) = lo + r % (hi - lo)``, ``d``
    draws per search.
    """
    d = features.shape[0]
    mask = np.uint64(0xFFFFFFFF)
    lo = 0
    hi = d
    visited = 0
    for f in range(d):
        rank[f] = d
    for i in range(d):
        state ^= (state << np.uint64(13)) & mask
        state ^= state >> np.uint64(17)
        state ^= (state << np.uint64(5)) & mask
        r = (state & np.uint64(RAND_R_MAX)) % np.uint64(d - i)
        j = lo + np.int64(r)
        f = features[j]
        if constant[f]:
            features[j] = features[lo]
            features[lo] = f
            lo += 1
        else:
            hi -= 1
            features[j] = features[hi]
            features[hi] = f
            rank[f] = visited
            visited += 1
    return state


class FeatureShuffle:
    """The splitter's ``features`` array and RNG, replayed lazily node by node."""

    def __init__(self, d: int, rand_r_state: int) -> None:
        self.d = d
        self.state0 = rand_r_state or 1  # our_rand_r replaces a zero seed by 1
        self.pending: list[np.ndarray] = []  # constant-feature flags per searched node
        self.done = 0
        self.state = np.uint64(self.state0)
        self.features = np.arange(d, dtype=np.int64)
        self.ranks: dict[int, np.ndarray] = {}

    def searched(self, constant: np.ndarray) -> int:
        """Register one split search (it consumes ``d`` draws); return its index."""
        self.pending.append(constant)
        return len(self.pending) - 1

    def visit_rank(self, index: int) -> np.ndarray:
        """``rank[f]``: when search ``index`` visited non-constant feature ``f``."""
        while self.done <= index:
            rank = np.empty(self.d, dtype=np.int64)
            self.state = shuffle_visits(self.state, self.features, self.pending[self.done], rank)
            self.ranks[self.done] = rank
            self.done += 1
        return self.ranks[index]
