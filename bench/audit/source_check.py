"""The source check (``--against``): can two datasets or sources be told apart?

For every class name the two datasets share (e.g. ``healthy`` in both), the
images of that class are pooled and labelled by *source*; where they share no
class name, all images are. If a classifier separates them, anything trained
on a mix of the two can learn the source instead of the disease. Tested twice,
reported like the acquisition test: from acquisition properties
(:func:`bench.audit.shortcut.shortcut_test`) and from backbone features (a linear
classifier under grouped CV). Images present in both datasets (exact or
perceptual duplicates) are listed as well: never train on one and test on the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.audit.duplicates import (
    DHASH_DISTANCE,
    PHASH_DISTANCE,
    close_hash_pairs,
    hash_bits,
)
from bench.audit.evaluation import TestResult, grouped_test
from bench.audit.properties import PropertyTable
from bench.audit.shortcut import FAIL_AUC, WARN_AUC, ShortcutResult, shortcut_test

LINEAR = "logreg"


@dataclass
class Comparison:
    """One source-vs-source comparison (a shared class, or everything)."""

    subject: str
    n_a: int
    n_b: int
    properties: ShortcutResult
    features: TestResult | None
    level: str
    verdict: str

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "n_a": self.n_a,
            "n_b": self.n_b,
            "level": self.level,
            "verdict": self.verdict,
            "properties": self.properties.to_json(),
            "features": None if self.features is None else self.features.to_json(),
        }


@dataclass
class SourceCheck:
    """DATA against one other dataset."""

    name_a: str
    name_b: str
    comparisons: list[Comparison]
    shared: list[dict[str, Any]] = field(default_factory=list)  # images present in both
    level: str = "ok"
    verdict: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.name_a,
            "b": self.name_b,
            "level": self.level,
            "verdict": self.verdict,
            "comparisons": [c.to_json() for c in self.comparisons],
            "shared_images": self.shared,
        }


def _level_of(strength: float) -> str:
    if strength >= FAIL_AUC:
        return "fail"
    return "warn" if strength > WARN_AUC else "ok"


def _compare(
    subject: str,
    a: PropertyTable,
    b: PropertyTable,
    idx_a: np.ndarray,
    idx_b: np.ndarray,
    feats_a: np.ndarray | None,
    feats_b: np.ndarray | None,
    *,
    folds: int,
    seed: int,
    backbone: str,
) -> Comparison:
    rows = [a.rows[i] for i in idx_a] + [b.rows[i] for i in idx_b]
    labels = np.concatenate([np.zeros(len(idx_a)), np.ones(len(idx_b))]).astype(np.int64)
    groups = [f"a:{a.imageset.groups[i]}" for i in idx_a] + [
        f"b:{b.imageset.groups[i]}" for i in idx_b
    ]
    names = (a.imageset.name, b.imageset.name)
    props = shortcut_test(rows, labels, groups, names, folds=folds, seed=seed, what="sources")
    feat = None
    if feats_a is not None and feats_b is not None:
        X = np.concatenate([feats_a[idx_a], feats_b[idx_b]])
        feat = grouped_test(X, labels, groups, classifier=LINEAR, folds=folds, seed=seed)
        if feat is not None:
            feat.extra["backbone"] = backbone
    strengths = {"acquisition properties": props.everything, f"{backbone} features": feat}
    scored = {
        k: v.strength for k, v in strengths.items() if v is not None and not math.isnan(v.strength)
    }
    if not scored:
        return Comparison(subject, len(idx_a), len(idx_b), props, feat, "ok", "too few groups")
    best = max(scored, key=lambda k: scored[k])
    level = _level_of(scored[best])
    res = strengths[best]
    assert res is not None
    if level == "fail":
        words = (
            f"{subject}: the two sources are told apart by {best} ({res.describe()}); "
            "a model trained on a mix can learn the source instead of the disease"
        )
    elif level == "warn":
        words = f"{subject}: the sources differ somewhat by {best} ({res.describe()})"
    else:
        words = f"{subject}: no evidence the sources can be told apart ({best}: {res.describe()})"
    return Comparison(subject, len(idx_a), len(idx_b), props, feat, level, words)


def shared_images(a: PropertyTable, b: PropertyTable, limit: int = 50) -> list[dict[str, Any]]:
    """Images of ``a`` that also appear in ``b`` (same digest, or perceptual near-copies)."""
    out: list[dict[str, Any]] = []
    where_b: dict[str, int] = {}
    for j, d in enumerate(b.digests):
        where_b.setdefault(d, j)
    exact = set()
    for i, d in enumerate(a.digests):
        if d in where_b:
            exact.add((i, where_b[d]))
            out.append({"a": a.imageset.relpath(i), "b": b.imageset.relpath(where_b[d]),
                        "method": "exact", "distance": 0})  # fmt: skip
    na = len(a.rows)
    pb = hash_bits(a.column("phash") + b.column("phash"))
    db = hash_bits(a.column("dhash") + b.column("dhash"))
    for i, j, dist in close_hash_pairs(pb, PHASH_DISTANCE):
        if i >= na or j < na or (i, j - na) in exact:
            continue
        if int(np.unpackbits(db[i] ^ db[j]).sum()) <= DHASH_DISTANCE:
            out.append({"a": a.imageset.relpath(i), "b": b.imageset.relpath(j - na),
                        "method": "perceptual", "distance": dist})  # fmt: skip
    return (
        out
        if limit is None
        else out[: max(limit, 0)] + ([{"more": len(out) - limit}] if len(out) > limit else [])
    )


def source_check(
    a: PropertyTable,
    b: PropertyTable,
    feats_a: np.ndarray | None,
    feats_b: np.ndarray | None,
    *,
    folds: int = 5,
    seed: int = 0,
    backbone: str = "",
) -> SourceCheck:
    """Compare dataset ``a`` with ``b`` per shared class name (or as a whole)."""
    ca, cb = a.imageset.classes, b.imageset.classes
    shared = [c for c in ca if c in cb]
    subjects: list[tuple[str, np.ndarray, np.ndarray]] = []
    for c in shared:
        ia = np.flatnonzero(a.imageset.labels == ca.index(c))
        ib = np.flatnonzero(b.imageset.labels == cb.index(c))
        subjects.append((f"class {c!r}", ia, ib))
    if not shared:
        subjects.append(("all images", np.arange(len(a.rows)), np.arange(len(b.rows))))
    comparisons = [
        _compare(s, a, b, ia, ib, feats_a, feats_b, folds=folds, seed=seed, backbone=backbone)
        for s, ia, ib in subjects
    ]
    both = shared_images(a, b)
    order = {"ok": 0, "warn": 1, "fail": 2}
    worst = max(comparisons, key=lambda c: order[c.level])
    level, words = worst.level, worst.verdict
    n_shared = sum(1 for s in both if "a" in s) + sum(s.get("more", 0) for s in both)
    if n_shared:
        words += (
            f"; {n_shared} image(s) of {a.imageset.name} also appear in {b.imageset.name}: "
            "never train on one and test on the other"
        )
        level = "fail" if level == "fail" else "warn"
    return SourceCheck(a.imageset.name, b.imageset.name, comparisons, both, level, words)
