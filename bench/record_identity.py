"""What makes two result records comparable, and what tells their rows apart.

Used by the regression gate (``bench.compare``) and the leaderboard
(``bench.leaderboard``); works on plain record dicts and on typed records
(``bench.records``) alike.

* :func:`dataset_identity` / :func:`dataset_label` -- the evaluated image set (dataset
  fingerprint, the images actually used, mask) and ``"aria [5d8cad23]"`` for tables.
* :func:`cell_options` / :func:`options_text` -- the options a suite set for a cell
  (classifier, backbone, protocol settings, augmentation): anything not listed is
  the plugin's default.
* :func:`record_mismatches` -- why two records (and their matched cells) are not
  comparable: dataset, split kind, folds or hold-out, seeds.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from bench.units import get

# settings that change speed, not results: never part of a row's identity
SPEED_ONLY = frozenset({"device", "channels_last", "cuda_graph", "eval_batch_size"})


def short_fingerprint(dataset: Mapping[str, Any]) -> str:
    """The first 8 hex digits of the dataset fingerprint (``"?"`` when unknown)."""
    fp = str(dataset.get("fingerprint") or "?")
    return fp.split(":", 1)[-1][:8]


def dataset_identity(dataset: Mapping[str, Any]) -> str:
    """A digest of the image set a record evaluated: fingerprint, images used, mask.

    The fingerprint covers the validated images (paths, content, labels); the
    images actually used (``paths``, e.g. after undersampling) and the mask are
    added, so a balanced or masked run is never taken for the full set.
    """
    h = hashlib.sha256()
    h.update(str(dataset.get("fingerprint")).encode())
    h.update(b"\0" + "\n".join(str(p) for p in dataset.get("paths") or []).encode())
    h.update(b"\0" + json.dumps(dataset.get("mask"), sort_keys=True).encode())
    return h.hexdigest()[:16]


def dataset_label(dataset: Mapping[str, Any]) -> str:
    """``"aria_all_pbs_binary (fp 5d8cad23, 3216 images)"``: name, short fingerprint, size.

    The image count tells a balanced subset (same fingerprint, fewer images used)
    from its parent.
    """
    n = dataset.get("n_images")
    size = f", {n} images" if isinstance(n, int) else ""
    return f"{dataset.get('name') or '?'} (fp {short_fingerprint(dataset)}{size})"


def _protocol_index(cell: Any) -> int | None:
    match = re.search(r"\|p(\d+)$", str(get(cell, "id", "")))
    return int(match.group(1)) if match else None


def cell_options(record: Any, cell: Any) -> dict[str, Any]:
    """The options the record's suite set for ``cell`` (flat, ``group.key`` names).

    Classifier options, the backbone's options, the protocol table's ``settings``
    (fine-tuning) and the augmentation; :data:`SPEED_ONLY` settings (device,
    channels_last, cuda_graph, eval_batch_size) are left out: they change speed, not
    results.
    """
    config = get(get(record, "suite", {}), "config", {}) or {}
    out: dict[str, Any] = {}
    for key, value in sorted((get(cell, "classifier_options", {}) or {}).items()):
        out[f"clf.{key}"] = value
    backbone = (config.get("backbone") or {}).get(str(get(cell, "backbone", "")), {}) or {}
    for key, value in sorted(backbone.items()):
        out[f"bb.{key}"] = value
    protocols = config.get("protocol") or []
    index = _protocol_index(cell)
    if index is not None and index < len(protocols) and isinstance(protocols[index], Mapping):
        for key, value in sorted((protocols[index].get("settings") or {}).items()):
            if key not in SPEED_ONLY:
                out[key] = value
    aug = get(cell, "augmentation")
    if aug:
        copies = get(aug, "copies")
        out["aug"] = f"{get(aug, 'scheme', '?')}" + (f" x{copies}" if copies else "")
        if get(aug, "mode") and get(aug, "mode") != "premade":
            out["aug"] += f" {get(aug, 'mode')}"
    return out


def options_text(options: Mapping[str, Any]) -> str:
    """``"epochs=3, lr=0.0001, aug=loey2020 x2"``; ``"-"`` when the defaults ran."""
    if not options:
        return "-"
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items()
    )


def _split_text(split: Any) -> str:
    kind = str(get(split, "kind", "?"))
    folds, holdout = get(split, "folds"), get(split, "holdout")
    if holdout:
        return f"{kind} hold-out {holdout:g}"
    return f"{kind} {folds}-fold" if folds else kind


def record_mismatches(
    baseline: Any, candidate: Any, pairs: Iterable[tuple[Any, Any]] = ()
) -> list[str]:
    """Why ``candidate`` is not comparable with ``baseline`` (empty when it is).

    Checks the dataset (fingerprint, images used, mask), the seeds, and for each
    matched cell pair its split kind, fold count and hold-out fraction.
    """
    problems = []
    ds_b, ds_c = get(baseline, "dataset", {}) or {}, get(candidate, "dataset", {}) or {}
    if ds_b.get("fingerprint") != ds_c.get("fingerprint"):
        problems.append(f"dataset fingerprint {dataset_label(ds_b)} vs {dataset_label(ds_c)}")
    elif dataset_identity(ds_b) != dataset_identity(ds_c):
        problems.append(
            f"images used differ: {dataset_label(ds_b)} vs {dataset_label(ds_c)} (balance or mask)"
        )
    seeds_b, seeds_c = list(get(baseline, "seeds", [])), list(get(candidate, "seeds", []))
    if seeds_b != seeds_c:
        problems.append(f"seeds {seeds_b} vs {seeds_c}")
    differing: dict[tuple[str, str], int] = {}
    for b, c in pairs:
        sb, sc = _split_text(get(b, "split", {})), _split_text(get(c, "split", {}))
        if sb != sc:
            differing[(sb, sc)] = differing.get((sb, sc), 0) + 1
    splits = {
        f"split {sb} vs {sc} ({n} cell{'s' if n != 1 else ''})" for (sb, sc), n in differing.items()
    }
    if not splits:
        kinds_b = sorted({_split_text(get(c, "split", {})) for c in get(baseline, "cells", [])})
        kinds_c = sorted({_split_text(get(c, "split", {})) for c in get(candidate, "cells", [])})
        if kinds_b and kinds_c and kinds_b != kinds_c:
            splits.add(f"splits {', '.join(kinds_b) or '-'} vs {', '.join(kinds_c) or '-'}")
    problems.extend(sorted(splits))
    return problems
