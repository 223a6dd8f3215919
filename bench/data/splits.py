"""Splits that cannot leak: grouped stratified k-fold and hold-out.

Kinds (``make_folds``):

- ``grouped-kfold`` (default): scikit-learn ``StratifiedGroupKFold``
  (``shuffle=True, random_state=seed``). No group (source image or patient)
  is ever on both sides.
- ``stratified-kfold``: ``StratifiedKFold`` ignoring groups; allowed only when
  every group is distinct (one image per group, no augmented copies).
- ``paper-leaky``: ``StratifiedKFold`` over augmented samples, ignoring groups
  -- the paper's order (augment, then split). Copies of one image land on both
  sides; it exists to measure that inflation and is logged as ``LEAKY split``.

``make_holdout`` takes the first fold of a ``StratifiedGroupKFold`` with
``round(1 / test_size)`` splits (test_size 0.2 -> 5 splits -> ~80/20 by
groups, stratified); ``leaky=True`` uses a plain stratified random split.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from bench.errors import UserError

log = logging.getLogger("bench.data.splits")

SPLIT_KINDS = ("grouped-kfold", "stratified-kfold", "paper-leaky")
Split = tuple[np.ndarray, np.ndarray]


class LeakError(RuntimeError):
    """A group sits on both sides of a split (a bug: our splits must never do this)."""


def _as_arrays(labels: Sequence[int] | np.ndarray, groups: Sequence[str] | np.ndarray):
    y = np.asarray(labels)
    g = np.asarray(groups, dtype=object)
    if len(y) != len(g):
        raise ValueError("labels and groups must have the same length")
    return y, g


def _groups_per_class(y: np.ndarray, g: np.ndarray) -> dict[int, int]:
    return {int(c): len(set(g[y == c])) for c in np.unique(y)}


def _require_groups(
    y: np.ndarray, g: np.ndarray, n_splits: int, what: str, fix: str = "use fewer folds"
) -> None:
    per_class = _groups_per_class(y, g)
    short = {c: k for c, k in per_class.items() if k < n_splits}
    if len(per_class) < 2:
        raise UserError(f"{what} needs at least 2 classes, got {len(per_class)}")
    if short:
        detail = ", ".join(f"class {c}: {k}" for c, k in sorted(short.items()))
        raise UserError(
            f"{what} needs at least {n_splits} groups (images or patients) per class, "
            f"but {detail}; {fix} or add data"
        )


def make_folds(
    labels: Sequence[int] | np.ndarray,
    groups: Sequence[str] | np.ndarray,
    *,
    folds: int = 10,
    seed: int = 0,
    kind: str = "grouped-kfold",
) -> list[Split]:
    """``folds`` (train indices, test indices) pairs of the given ``kind``."""
    y, g = _as_arrays(labels, groups)
    if kind not in SPLIT_KINDS:
        raise UserError(f"unknown split kind {kind!r}; known: {', '.join(SPLIT_KINDS)}")
    if folds < 2:
        raise UserError(f"folds must be >= 2, got {folds}")
    x = np.zeros(len(y))
    if kind == "grouped-kfold":
        _require_groups(y, g, folds, f"{folds}-fold grouped cross-validation")
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        out = [(tr, te) for tr, te in splitter.split(x, y, g)]
        check_no_leak(out, g)
        return out
    if kind == "stratified-kfold" and len(set(g)) != len(g):
        raise UserError(
            "split 'stratified-kfold' ignores groups, so it needs one image per group; "
            "this set has repeated groups (augmented copies or patients): use 'grouped-kfold'"
        )
    counts = np.bincount(np.unique(y, return_inverse=True)[1])
    if len(counts) < 2 or counts.min() < folds:
        raise UserError(
            f"{folds}-fold cross-validation needs at least {folds} samples in each of 2+ classes; "
            f"class counts: {counts.tolist()}"
        )
    if kind == "paper-leaky":
        log.warning(
            "LEAKY split: paper-leaky %d-fold CV ignores groups; augmented copies of one "
            "image are on both sides (the paper's order, for comparison only)",
            folds,
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in splitter.split(x, y)]


def make_holdout(
    labels: Sequence[int] | np.ndarray,
    groups: Sequence[str] | np.ndarray,
    *,
    test_size: float = 0.2,
    seed: int = 0,
    leaky: bool = False,
) -> Split:
    """(train indices, test indices): grouped and stratified unless ``leaky``."""
    y, g = _as_arrays(labels, groups)
    if not 0.0 < test_size <= 0.5:
        raise UserError(f"test_size must be in (0, 0.5], got {test_size}")
    idx = np.arange(len(y))
    if leaky:
        log.warning(
            "LEAKY split: paper-leaky hold-out ignores groups; augmented copies of one image "
            "are on both sides (the paper's order, for comparison only)"
        )
        tr, te = train_test_split(idx, test_size=test_size, random_state=seed, stratify=y)
        return np.sort(tr), np.sort(te)
    n_splits = max(2, round(1.0 / test_size))
    _require_groups(
        y, g, n_splits, f"a grouped {test_size:.0%} hold-out", fix="use a larger holdout"
    )
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    tr, te = next(iter(splitter.split(np.zeros(len(y)), y, g)))
    check_no_leak([(tr, te)], g)
    return tr, te


def check_no_leak(splits: Sequence[Split] | Split, groups: Sequence[str] | np.ndarray) -> None:
    """Raise :class:`LeakError` if any group appears on both sides of any split."""
    g = np.asarray(groups, dtype=object)
    pairs = (
        [splits]
        if isinstance(splits, tuple)
        and len(splits) == 2
        and np.asarray(splits[0]).ndim == 1
        and not isinstance(splits[0], tuple)
        else list(splits)
    )
    for k, (tr, te) in enumerate(pairs):
        shared = set(g[np.asarray(tr, dtype=np.int64)]) & set(g[np.asarray(te, dtype=np.int64)])
        if shared:
            example = sorted(map(str, shared))[:3]
            raise LeakError(
                f"split {k}: {len(shared)} group(s) on both sides, e.g. {', '.join(example)}"
            )
