"""Exact and near-duplicate images, classified by what they would break.

* **exact**: the same SHA-256 content digest;
* **near (perceptual)**: pHash *and* dHash (``imagehash``, 64 bits each) within a
  Hamming distance -- survives re-encoding, resizing and small colour changes;
* **near (features)**, optional: cosine similarity of backbone features above a
  threshold.

Every pair is classified: ``across classes`` (a label conflict: the same picture
under two labels), ``across groups`` (same class, different groups/patients: the
copies land on both sides of a grouped split and leak) or ``within group``
(harmless for splits, but it over-weights that image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

PHASH_DISTANCE = 6  # max Hamming distance (of 64 bits) for a perceptual near-duplicate
DHASH_DISTANCE = 10
FEATURE_SIMILARITY = 0.98
KINDS = ("across classes", "across groups", "within group")
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@dataclass(frozen=True)
class Pair:
    """Two images ``a`` < ``b`` (indices into the audited set) that look the same."""

    a: int
    b: int
    method: str  # "exact", "perceptual" or "features"
    kind: str  # one of KINDS
    distance: float  # Hamming distance (pHash), 0 for exact, 1 - cosine for features

    def to_json(self) -> dict:
        return asdict(self)


def hash_bits(hexes: Sequence[str]) -> np.ndarray:
    """``(n, 8)`` uint8 array of 64-bit hashes given as hex strings."""
    return np.frombuffer(b"".join(bytes.fromhex(h) for h in hexes), dtype=np.uint8).reshape(
        len(hexes), -1
    )


def close_hash_pairs(
    bits: np.ndarray, max_distance: int, *, chunk: int = 512
) -> list[tuple[int, int, int]]:
    """Every ``(i, j, distance)`` with ``i < j`` and Hamming distance <= ``max_distance``."""
    n = len(bits)
    out: list[tuple[int, int, int]] = []
    for start in range(0, n, chunk):
        block = bits[start : start + chunk]
        dist = _POPCOUNT[block[:, None, :] ^ bits[None, :, :]].sum(axis=2, dtype=np.int32)
        ii, jj = np.nonzero(dist <= max_distance)
        ii = ii + start
        keep = ii < jj
        out += [(int(i), int(j), int(dist[i - start, j])) for i, j in zip(ii[keep], jj[keep])]
    return out


def classify(i: int, j: int, labels: np.ndarray, groups: Sequence[str]) -> str:
    """Which of :data:`KINDS` the pair ``(i, j)`` is."""
    if labels[i] != labels[j]:
        return "across classes"
    return "within group" if groups[i] == groups[j] else "across groups"


def find_duplicates(
    digests: Sequence[str],
    phashes: Sequence[str],
    dhashes: Sequence[str],
    labels: np.ndarray,
    groups: Sequence[str],
    *,
    phash_distance: int = PHASH_DISTANCE,
    dhash_distance: int = DHASH_DISTANCE,
) -> list[Pair]:
    """Exact pairs and perceptual near-duplicate pairs (an exact pair is not listed twice)."""
    pairs: list[Pair] = []
    by_digest: dict[str, list[int]] = {}
    for i, d in enumerate(digests):
        by_digest.setdefault(d, []).append(i)
    exact: set[tuple[int, int]] = set()
    for members in by_digest.values():
        for x, i in enumerate(members):
            for j in members[x + 1 :]:
                exact.add((i, j))
                pairs.append(Pair(i, j, "exact", classify(i, j, labels, groups), 0.0))
    if len(phashes) > 1:
        pbits, dbits = hash_bits(phashes), hash_bits(dhashes)
        for i, j, dist in close_hash_pairs(pbits, phash_distance):
            if (i, j) in exact:
                continue
            d2 = int(_POPCOUNT[dbits[i] ^ dbits[j]].sum())
            if d2 <= dhash_distance:
                pairs.append(Pair(i, j, "perceptual", classify(i, j, labels, groups), float(dist)))
    return sorted(pairs, key=lambda p: (KINDS.index(p.kind), p.distance, p.a, p.b))


def feature_pairs(
    features: np.ndarray,
    labels: np.ndarray,
    groups: Sequence[str],
    *,
    threshold: float = FEATURE_SIMILARITY,
    exclude: set[tuple[int, int]] | None = None,
    chunk: int = 1024,
) -> list[Pair]:
    """Pairs whose backbone features have cosine similarity >= ``threshold``."""
    x = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.maximum(norms, 1e-12)
    exclude = exclude or set()
    out: list[Pair] = []
    for start in range(0, len(x), chunk):
        sim = x[start : start + chunk] @ x.T
        ii, jj = np.nonzero(sim >= threshold)
        ii = ii + start
        for i, j in zip(ii.tolist(), jj.tolist()):
            if i < j and (i, j) not in exclude:
                s = float(sim[i - start, j])
                out.append(Pair(i, j, "features", classify(i, j, labels, groups), 1.0 - s))
    return sorted(out, key=lambda p: (KINDS.index(p.kind), p.distance, p.a, p.b))


def count_by_kind(pairs: Sequence[Pair]) -> dict[str, int]:
    """``{kind: number of pairs}`` for every kind (zeros included)."""
    counts = dict.fromkeys(KINDS, 0)
    for p in pairs:
        counts[p.kind] += 1
    return counts
