"""The tree splitter's feature visit order: scikit-learn's Fisher-Yates over its
``features`` array driven by the xorshift ``rand_r`` state, replayed lazily.

Only simulated when features tie exactly (see :mod:`.tree_builder`).
"""

from __future__ import annotations

import threading

import numpy as np

RAND_R_MAX = 0x7FFFFFFF


def _xorshift(s: np.ndarray) -> np.ndarray:
    """One step of scikit-learn's ``our_rand_r`` state update (uint32, vectorised)."""
    s = s ^ (s << np.uint32(13))
    s = s ^ (s >> np.uint32(17))
    return s ^ (s << np.uint32(5))


_POWERS: dict[int, np.ndarray] = {}
_POWERS_LOCK = threading.Lock()


def _powers(d: int) -> np.ndarray:
    """``P[k, b]`` = state after ``k + 1`` steps from state ``1 << b`` (xorshift is GF(2)-linear)."""
    with _POWERS_LOCK:
        if d not in _POWERS:
            out = np.empty((d, 32), dtype=np.uint32)
            s = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
            for k in range(d):
                s = _xorshift(s)
                out[k] = s
            _POWERS[d] = out
        return _POWERS[d]


def _advance(powers: np.ndarray, state: int, k: int) -> np.ndarray:
    """States after 1..k steps from ``state`` (``state != 0``)."""
    bits = [b for b in range(32) if (state >> b) & 1]
    return np.bitwise_xor.reduce(powers[:k, bits], axis=1)


class FeatureShuffle:
    """The splitter's ``features`` array and RNG, replayed lazily node by node."""

    def __init__(self, d: int, rand_r_state: int) -> None:
        self.d = d
        self.state0 = rand_r_state or 1  # our_rand_r replaces a zero seed by 1
        self.pending: list[np.ndarray] = []  # constant-feature flags per searched node
        self.done = 0
        self.state = self.state0
        self.features = list(range(d))
        self.ranks: dict[int, np.ndarray] = {}

    def searched(self, constant: np.ndarray) -> int:
        """Register one split search (it consumes ``d`` draws); return its index."""
        self.pending.append(constant)
        return len(self.pending) - 1

    def visit_rank(self, index: int) -> np.ndarray:
        """``rank[f]``: when search ``index`` visited non-constant feature ``f``."""
        if index in self.ranks:
            return self.ranks[index]
        powers = _powers(self.d)
        d = self.d
        span = np.arange(d, 0, -1, dtype=np.int64)
        while self.done <= index:
            states = _advance(powers, self.state, d)
            draws = ((states & np.uint32(RAND_R_MAX)).astype(np.int64) % span).tolist()
            constant = self.pending[self.done].tolist()
            feats = self.features
            lo, hi = 0, d
            order: list[int] = []
            for r in draws:
                j = lo + r
                f = feats[j]
                if constant[f]:
                    feats[j] = feats[lo]
                    feats[lo] = f
                    lo += 1
                else:
                    hi -= 1
                    feats[j] = feats[hi]
                    feats[hi] = f
                    order.append(f)
            rank = np.full(d, d, dtype=np.int64)
            rank[order] = np.arange(len(order))
            self.ranks[self.done] = rank
            self.state = int(states[-1])
            self.done += 1
        return self.ranks[index]
