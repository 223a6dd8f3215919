"""Matching a test set's classes to the training set's, by name (after an optional class_map)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bench.errors import UserError

__all__ = ["ClassMatch", "match_classes"]


@dataclass(frozen=True)
class ClassMatch:
    """How test labels map to training labels.

    ``to_train[t]`` is the training class index of test class ``t`` (-1: dropped);
    ``renamed`` lists ``(test name, train name)`` pairs the class_map changed;
    ``dropped`` the test classes left out (only with ``only_shared``);
    ``missing`` the training classes the test set does not have.
    """

    to_train: tuple[int, ...]
    renamed: tuple[tuple[str, str], ...] = ()
    dropped: tuple[str, ...] = ()
    missing: tuple[str, ...] = field(default=())

    def labels(self, test_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(kept rows, their training-class labels)`` of the test set's labels."""
        mapped = np.asarray(self.to_train, dtype=np.int64)[np.asarray(test_labels, dtype=np.int64)]
        keep = np.flatnonzero(mapped >= 0)
        return keep, mapped[keep]

    def as_dict(self) -> dict[str, object]:
        return {
            "renamed": [list(p) for p in self.renamed],
            "dropped": list(self.dropped),
            "missing": list(self.missing),
        }


def match_classes(
    train: Sequence[str],
    test: Sequence[str],
    class_map: Mapping[str, str] | None,
    where: str,
    *,
    only_shared: bool = False,
) -> ClassMatch:
    """Match ``test`` class names to ``train``'s; :class:`UserError` (exit 2) on a mismatch.

    ``class_map`` renames test classes (``{ ALL = "leukemia", hem = "healthy" }``);
    names are compared exactly after it. Every test class must then be a training
    class, unless ``only_shared`` (then the others are dropped and listed). A
    training class the test set lacks is allowed and listed in ``missing``.
    """
    class_map = dict(class_map or {})
    unknown = sorted(set(class_map) - set(test))
    if unknown:
        raise UserError(
            f"{where}.class_map: {', '.join(map(repr, unknown))} not among the test set's "
            f"classes {sorted(test)}"
        )
    bad_target = sorted({v for v in class_map.values() if v not in train})
    if bad_target:
        raise UserError(
            f"{where}.class_map: maps to {', '.join(map(repr, bad_target))}, not among the "
            f"training classes {sorted(train)}"
        )
    index = {c: i for i, c in enumerate(train)}
    to_train, renamed, dropped = [], [], []
    for name in test:
        target = class_map.get(name, name)
        if target != name:
            renamed.append((name, target))
        if target in index:
            to_train.append(index[target])
        else:
            to_train.append(-1)
            dropped.append(name)
    if dropped and not only_shared:
        raise UserError(
            f"{where}: the test set's classes {sorted(test)} do not match the training "
            f"classes {sorted(train)} ({', '.join(map(repr, dropped))} unmatched); add a "
            f'class_map (e.g. class_map = {{ {dropped[0]} = "{sorted(train)[0]}" }}) '
            "or only_shared = true"
        )
    if len(dropped) == len(test):
        raise UserError(f"{where}: no test class matches a training class {sorted(train)}")
    targets = {to_train[i] for i in range(len(test)) if to_train[i] >= 0}
    missing = tuple(c for i, c in enumerate(train) if i not in targets)
    return ClassMatch(tuple(to_train), tuple(renamed), tuple(dropped), missing)
