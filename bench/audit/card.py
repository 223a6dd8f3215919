"""The report card: what the dataset is (counts, groups, balance, formats) and the findings.

Plain dicts, JSON-ready, so every renderer (rich, Markdown, JSON, HTML) reads the
same thing. Levels are ``ok`` < ``warn`` < ``fail``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from bench.audit.duplicates import KINDS, Pair, count_by_kind
from bench.audit.properties import PropertyTable

LEVELS = ("ok", "warn", "fail")
IMBALANCE_NOTE = 1.5  # class ratio above which accuracy alone misleads
MAX_PAIRS = 200  # pairs listed in a report (all are counted)


def worst(levels: list[str]) -> str:
    """The highest of ``levels`` (``ok`` when empty)."""
    return max(levels, key=LEVELS.index, default="ok")


def dataset_card(table: PropertyTable, loader: str, path: str) -> dict[str, Any]:
    """Counts, groups, class balance and the resolution/format table per class."""
    s = table.imageset
    groups = np.asarray(s.groups, dtype=object)
    sizes = Counter(s.groups)
    rel = [s.relpath(i) for i in range(len(s))]
    grouping = s.meta.get("groups")
    patient_ids = grouping == "patient_id" or (
        grouping is None and any(g != r for g, r in zip(s.groups, rel)) and max(sizes.values()) > 1
    )
    counts = s.class_counts()
    present = [n for n in counts.values() if n]
    formats = []
    for k, cls in enumerate(s.classes):
        idx = np.flatnonzero(s.labels == k)
        combos = Counter(
            (table.rows[i]["format"], f"{table.rows[i]['width']}x{table.rows[i]['height']}",
             table.rows[i].get("jpeg_subsampling") or "-")
            for i in idx
        )  # fmt: skip
        for (fmt, size, sub), n in combos.most_common(5):
            formats.append(
                {"class": cls, "format": fmt, "size": size, "subsampling": sub, "n": n,
                 "fraction": round(n / max(1, len(idx)), 4)}
            )  # fmt: skip
        if len(combos) > 5:
            rest = sum(n for _, n in combos.most_common()[5:])
            formats.append({"class": cls, "format": "other", "size": f"{len(combos) - 5} more",
                            "subsampling": "-", "n": rest, "fraction": round(rest / len(idx), 4)})  # fmt: skip
    return {
        "name": s.name,
        "loader": loader,
        "path": path,
        "n_images": len(s),
        "n_excluded": len(table.excluded),
        "excluded": [list(x) for x in table.excluded],
        "n_groups": len(sizes),
        "patient_ids": bool(patient_ids),
        "groups_from": grouping or ("manifest" if patient_ids else "image"),
        "max_images_per_group": max(sizes.values()) if sizes else 0,
        "classes": [
            {
                "name": c,
                "n": n,
                "fraction": round(n / max(1, len(s)), 4),
                "groups": len(set(groups[s.labels == k])),
            }
            for k, (c, n) in enumerate(counts.items())
        ],  # fmt: skip
        "imbalance_ratio": round(max(present) / min(present), 3) if present else None,
        "positive": s.positive,
        "formats": formats,
    }


def notes(card: dict[str, Any]) -> list[str]:
    """Things a reviewer should know that are not findings of a test."""
    out = []
    if not card["patient_ids"]:
        out.append(
            "no patient ids: each image is its own group, so images of one patient (or one "
            "slide) can sit on both sides of any split; grouped numbers are an upper bound"
        )
    ratio = card["imbalance_ratio"]
    if ratio and ratio > IMBALANCE_NOTE:
        out.append(
            f"classes are imbalanced ({ratio:.1f} : 1): accuracy alone misleads; read balanced "
            "accuracy, specificity and recall"
        )
    if card["n_excluded"]:
        out.append(f"{card['n_excluded']} bad image(s) excluded (--skip-bad)")
    return out


def pair_json(p: Pair, table: PropertyTable) -> dict[str, Any]:
    """A duplicate pair with both images' paths and classes."""
    s = table.imageset
    return {
        **p.to_json(),
        "path_a": str(s.paths[p.a]),
        "path_b": str(s.paths[p.b]),
        "rel_a": s.relpath(p.a),
        "rel_b": s.relpath(p.b),
        "class_a": s.classes[s.labels[p.a]],
        "class_b": s.classes[s.labels[p.b]],
    }


def duplicates_finding(
    pairs: list[Pair], feature_pairs: list[Pair] | None, table: PropertyTable, settings: dict
) -> dict[str, Any]:
    """The duplicates finding: counts by kind and method, the verdict, the pairs."""
    every = sorted(pairs + (feature_pairs or []), key=lambda p: KINDS.index(p.kind))
    counts = count_by_kind(every)
    by_method = Counter(p.method for p in every)
    conflicts, straddle, within = (counts[k] for k in ("across classes", "across groups",
                                                       "within group"))  # fmt: skip
    if conflicts:
        level = "fail"
        words = (
            f"{conflicts} pair(s) of (near-)identical images under different labels: label "
            "conflicts; a model is scored on images it has seen with the other label"
        )
    elif straddle:
        level = "warn"
        words = (
            f"{straddle} pair(s) of (near-)identical images in different groups: a grouped "
            "split puts the copies on both sides (leakage); give each pair one group or drop one"
        )
    else:
        level = "ok"
        words = "no duplicates across classes or groups"
    if within:
        words += f"; {within} pair(s) within a group (harmless for splits)"
    methods = ", ".join(f"{n} {m}" for m, n in sorted(by_method.items())) or "none"
    return {
        "id": "duplicates",
        "title": "Duplicates",
        "level": level,
        "verdict": f"{words} ({methods})",
        "counts": counts,
        "by_method": dict(by_method),
        "settings": settings,
        "pairs": [pair_json(p, table) for p in every[:MAX_PAIRS]],
        "n_pairs": len(every),
    }
