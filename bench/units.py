"""Independent units: which test predictions share a source image or a patient.

Augmented copies of one source image, and images of one patient, are not
independent evidence. Intervals and paired tests (``bench.metrics.summarize``,
``bench.stats``) are computed over *units*: the patient when the dataset gives
patient ids, else the source image. This module turns a run's samples, or a
stored record's cell, into one unit id per test prediction (docs/metrics.md).

* :func:`dataset_unit_info` -- the ``unit`` / ``groups`` entries of a record's ``dataset``.
* :func:`sample_units` -- unit id and kind per sample of a run (an ImageSet's Samples).
* :func:`pooled_units` -- the unit id of each pooled test prediction (fold order).
* :func:`record_sample_units` / :func:`cell_units` -- the same from a stored record.
* :func:`unit_text` / :func:`metrics_unit_text` -- "3480 predictions of 696 source images".

Recomputing a stored cell's metrics over units: :mod:`bench.record_stats`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

UNIT_SAMPLE = "sample"
UNIT_IMAGE = "source image"
UNIT_PATIENT = "patient"
PLURAL = {UNIT_SAMPLE: "samples", UNIT_IMAGE: "source images", UNIT_PATIENT: "patients"}


def get(obj: Any, key: str, default: Any = None) -> Any:
    """``obj[key]`` of a dict, ``obj.key`` of a typed record (``bench.records``), else default."""
    value = obj.get(key, default) if isinstance(obj, Mapping) else getattr(obj, key, default)
    return default if value is None else value


def imageset_unit(imageset: Any) -> str:
    """``"patient"`` when images share split groups (patient ids: C-NMC, a manifest's
    ``group`` column), else ``"source image"`` (every image its own group)."""
    if len(set(imageset.groups)) < len(imageset):
        return UNIT_PATIENT
    return UNIT_IMAGE


def dataset_unit_info(imageset: Any) -> dict[str, Any]:
    """Entries for a record's ``dataset`` block: ``unit`` and, for patients, ``groups``.

    ``groups[i]`` is the patient id of image ``i`` (aligned with ``dataset.paths``), so
    reports can recompute intervals over patients from the record alone.
    """
    unit = imageset_unit(imageset)
    groups = [str(g) for g in imageset.groups] if unit == UNIT_PATIENT else None
    return {"unit": unit, "groups": groups}


def sample_units(samples: Any) -> tuple[np.ndarray, str]:
    """(unit id per sample, unit kind) of a run's ``bench.data.imageset.Samples``."""
    unit = imageset_unit(samples.imageset)
    source = np.asarray(samples.source, dtype=np.int64)
    if unit == UNIT_PATIENT:
        return np.asarray(samples.groups, dtype=object).astype(str), unit
    return source, unit


def pooled_units(folds: Sequence[Any], units_per_sample: np.ndarray) -> np.ndarray:
    """The unit of each test prediction, in the order ``summarize`` pools folds."""
    units_per_sample = np.asarray(units_per_sample)
    if not folds:
        return units_per_sample[:0]
    index = np.concatenate([np.asarray(get(f, "test_index", []), dtype=np.int64) for f in folds])
    return units_per_sample[index]


def record_sample_units(
    cell: Any, dataset: Mapping[str, Any] | None = None
) -> tuple[np.ndarray | None, str, str | None]:
    """(unit id per sample, unit kind, note) of a stored cell; ids None without ``samples``.

    Patients when ``dataset`` stores ``unit = "patient"`` and ``groups``; else source
    images (``samples.source``). The note says when a record has fewer groups than
    images (patients known at run time) but no stored patient ids.
    """
    dataset = dataset or {}
    source = get(get(cell, "samples", {}), "source", [])
    if len(source) == 0:
        return None, UNIT_SAMPLE, None
    source = np.asarray(source, dtype=np.int64)
    groups = dataset.get("groups")
    if dataset.get("unit") == UNIT_PATIENT and groups and len(groups) > int(source.max()):
        return np.asarray(groups, dtype=object).astype(str)[source], UNIT_PATIENT, None
    note = None
    n_groups, n_images = dataset.get("n_groups"), dataset.get("n_images")
    if isinstance(n_groups, int) and isinstance(n_images, int) and n_groups < n_images:
        note = (
            f"the dataset has {n_groups} patients for {n_images} images but the record stores "
            "no patient ids (dataset.groups): intervals are over source images, narrower "
            "than over patients"
        )
    return source, UNIT_IMAGE, note


def cell_units(
    cell: Any, dataset: Mapping[str, Any] | None = None
) -> tuple[np.ndarray | None, str]:
    """(unit id per pooled test prediction, unit kind) of a stored cell."""
    per_sample, unit, _ = record_sample_units(cell, dataset)
    if per_sample is None:
        return None, unit
    return pooled_units(get(cell, "folds", []), per_sample), unit


def unit_text(n_predictions: int, n_units: int, unit: str) -> str:
    """``"3480 predictions of 696 source images"``, ``"60 predictions of 37 patients"``."""
    if unit == UNIT_SAMPLE:
        return f"{n_predictions} predictions (each its own unit)"
    plural = PLURAL.get(unit, f"{unit}s") if n_units != 1 else unit
    return f"{n_predictions} predictions of {n_units} {plural}"


def metrics_unit_text(metrics: Mapping[str, Any]) -> str | None:
    """:func:`unit_text` of a stored ``metrics`` block; None for records before units."""
    if not isinstance(metrics, Mapping) or "n_units" not in metrics:
        return None
    return unit_text(int(metrics["n_predictions"]), int(metrics["n_units"]), str(metrics["unit"]))
