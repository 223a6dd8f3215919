"""Builtin dataset loaders: ``imagefolder``, ``manifest``, ``all-idb2`` and ``c-nmc``.

The logic lives in :mod:`bench.data.loaders`; this plugin only registers it
through the same hook a third-party dataset plugin would use.
"""

from __future__ import annotations

from bench.data import loaders
from bench.hookspecs import hookimpl
from bench.specs import DatasetSpec

_POSITIVE = (
    "class counted as positive in binary metrics (default: leukemia/all/blast, else the 2nd class)"
)


@hookimpl
def leukobench_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            name="imagefolder",
            factory=loaders.load_imagefolder,
            description="root/<class>/... (nested folders allowed); groups from labels.csv patient_id if present",
            options={
                "positive": _POSITIVE,
                "classes": "select and order a subset of classes (list or comma-separated)",
            },
        ),
        DatasetSpec(
            name="manifest",
            factory=loaders.load_manifest,
            description="CSV with path,label[,group] (paths relative to the CSV)",
            options={"positive": _POSITIVE, "classes": "select and order a subset of classes"},
        ),
        DatasetSpec(
            name="all-idb2",
            factory=loaders.load_all_idb2,
            description="ALL-IDB2 layout: ImNNN_1.tif = blast (leukemia), ImNNN_0.tif = healthy",
            options={"positive": _POSITIVE},
        ),
        DatasetSpec(
            name="c-nmc",
            factory=loaders.load_cnmc,
            description="C-NMC 2019 layout: all/ and hem/ folders; patient ids from UID_<patient>_... names",
            options={"positive": _POSITIVE},
        ),
    ]
