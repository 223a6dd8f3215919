"""``run_audit``: every audit test on one dataset (and its ``--against`` datasets) -> a report.

Steps: acquisition properties (cached per file digest; bad files stop here unless
``skip_bad``), duplicates, the acquisition shortcut test, then -- when a backbone
is given -- backbone features (feature cache), the source check and the leakage
delta. The report is a JSON-ready dict (:mod:`bench.audit.card`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import __version__
from bench.audit import card as cards
from bench.audit.duplicates import (
    DHASH_DISTANCE,
    PHASH_DISTANCE,
    feature_pairs,
    find_duplicates,
)
from bench.audit.leakage import leakage_delta
from bench.audit.properties import acquisition_properties
from bench.audit.shortcut import FAIL_AUC, WARN_AUC, shortcut_test
from bench.audit.source_check import source_check
from bench.data.imageset import ImageSet, Samples


@dataclass
class AuditOptions:
    """Settings of one audit (the CLI's flags)."""

    backbone: str | None = "efficientnet_lite0"
    folds: int = 5
    seed: int = 0
    augment: str = "none"
    copies: int = 5
    skip_bad: bool = False
    phash_distance: int = PHASH_DISTANCE
    dhash_distance: int = DHASH_DISTANCE
    feature_similarity: float | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    device: str = "auto"
    progress: bool = True
    workers: int = 2
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class AuditInput:
    """A loaded dataset and how it was named on the command line."""

    imageset: ImageSet
    loader: str
    path: str


def _samples(imageset: ImageSet, opts: AuditOptions) -> Samples:
    from bench.data.augment import expand

    if opts.augment == "none":
        return Samples.originals(imageset)
    return expand(imageset, scheme=opts.augment, copies=opts.copies, seed=opts.seed)


def _finding(fid: str, title: str, level: str, verdict: str, **more: Any) -> dict[str, Any]:
    return {"id": fid, "title": title, "level": level, "verdict": verdict, **more}


def run_audit(
    data: AuditInput, against: list[AuditInput] | None = None, opts: AuditOptions | None = None
) -> dict[str, Any]:
    """Audit ``data`` (and compare it with each of ``against``); return the report dict."""
    opts = opts or AuditOptions()
    timing: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timing[name] = round(now - since, 3)
        return now

    table = acquisition_properties(
        data.imageset, skip_bad=opts.skip_bad, workers=opts.workers, cache_dir=opts.cache_dir
    )
    others = [
        acquisition_properties(
            a.imageset, skip_bad=opts.skip_bad, workers=opts.workers, cache_dir=opts.cache_dir
        )
        for a in against or []
    ]
    t = lap("properties", t0)
    s = table.imageset
    pairs = find_duplicates(
        table.digests, table.column("phash"), table.column("dhash"), s.labels, s.groups,
        phash_distance=opts.phash_distance, dhash_distance=opts.dhash_distance,
    )  # fmt: skip
    t = lap("duplicates", t)
    shortcut = shortcut_test(
        table.rows, s.labels, s.groups, s.classes, folds=opts.folds, seed=opts.seed
    )
    t = lap("acquisition test", t)

    source = None
    feats: np.ndarray | None = None
    feats_other: list[np.ndarray | None] = [None] * len(others)
    if opts.backbone:
        from bench.audit.backbone_features import features_of, open_backbone

        source = open_backbone(
            opts.backbone, cache_dir=opts.cache_dir, use_cache=opts.use_cache,
            device=opts.device, progress=opts.progress,
        )  # fmt: skip
        feats = features_of(source, Samples.originals(s), table.digests)
        feats_other = [features_of(source, Samples.originals(o.imageset), o.digests)
                       for o in others]  # fmt: skip
        t = lap("features", t)

    fpairs = None
    if feats is not None and opts.feature_similarity is not None:
        exact = {(p.a, p.b) for p in pairs}
        fpairs = feature_pairs(
            feats, s.labels, s.groups, threshold=opts.feature_similarity, exclude=exact
        )
    dup_settings = {
        "phash_distance": opts.phash_distance,
        "dhash_distance": opts.dhash_distance,
        "feature_similarity": opts.feature_similarity,
    }
    findings = [cards.duplicates_finding(pairs, fpairs, table, dup_settings)]
    findings.append(
        _finding("acquisition", "Acquisition shortcut test", shortcut.level, shortcut.verdict,
                 result=shortcut.to_json())
    )  # fmt: skip

    for other_input, other, f_other in zip(against or [], others, feats_other):
        check = source_check(
            table, other, feats, f_other, folds=opts.folds, seed=opts.seed,
            backbone=opts.backbone or "",
        )  # fmt: skip
        findings.append(
            _finding(f"source:{other.imageset.name}", f"Source check against {other_input.path}",
                     check.level, check.verdict, result=check.to_json())
        )  # fmt: skip
    if against:
        t = lap("source check", t)

    if source is not None and feats is not None:
        samples = _samples(s, opts)
        x = feats if opts.augment == "none" else features_of(source, samples, table.digests)
        leak = leakage_delta(
            x, samples.labels, samples.groups, backbone=source.description,
            augmentation="none" if opts.augment == "none" else f"{opts.augment} x{opts.copies}",
            folds=opts.folds, seed=opts.seed,
        )  # fmt: skip
        if leak is None:
            findings.append(_finding("leakage", "Leakage delta", "ok", "too few groups to test"))
        else:
            findings.append(
                _finding("leakage", "Leakage delta", leak.level, leak.verdict,
                         result=leak.to_json())
            )  # fmt: skip
        t = lap("leakage delta", t)
    else:
        findings.append(
            _finding("leakage", "Leakage delta", "ok", "not run (no backbone: --backbone none)",
                     skipped=True)
        )  # fmt: skip

    card = cards.dataset_card(table, data.loader, data.path)
    timing["total"] = round(time.perf_counter() - t0, 3)
    return {
        "tool": f"leukobench audit {__version__}",
        "dataset": card,
        "against": [cards.dataset_card(o, a.loader, a.path) for o, a in zip(others, against or [])],
        "settings": {
            **{
                k: v for k, v in asdict(opts).items() if k not in ("cache_dir", "progress", "extra")
            },
            "backbone": source.description if source is not None else None,
            "fail_auc": FAIL_AUC,
            "warn_auc": WARN_AUC,
            **opts.extra,
        },
        "level": cards.worst([f["level"] for f in findings]),
        "findings": findings,
        "notes": cards.notes(card),
        "cache": {
            "properties_computed": table.n_computed + sum(o.n_computed for o in others),
            "features_cached": source.n_cached if source is not None else 0,
            "features_computed": source.n_computed if source is not None else 0,
        },
        "timing_s": timing,
    }
