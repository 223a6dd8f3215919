"""The whole-record check run on every record read from a file (:func:`check_run_record`).

Types, ranges (rates in [0, 1] or null), labels within the classes, indices within
range, lengths that agree (``y_true`` / ``y_pred`` / ``score`` / ``test_index`` per
fold), the dataset fields reports key on, and stored metrics against the stored
predictions (:mod:`bench.records.consistency`). The first problem is one
:class:`~bench.records.cells.RecordError` line: file, JSON path, what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.records.cell_checks import CellContext, check_cell
from bench.records.consistency import check_cell_metrics
from bench.records.fields import (
    At,
    expect,
    index_list,
    integer,
    mapping,
    string_list,
    text,
)
from bench.records.run import RunRecord

RUN_STATUSES = ("complete", "incomplete")
UNITS = ("source image", "patient")


def check_dataset(dataset: Mapping[str, Any], at: At) -> tuple[int, list[str]]:
    """The ``dataset`` table; returns (images that ``samples.source`` indexes, classes)."""
    text(dataset.get("name"), at.key("name"), empty=False)
    text(dataset.get("fingerprint"), at.key("fingerprint"), empty=False)
    n_images = integer(dataset.get("n_images"), at.key("n_images"))
    classes = string_list(dataset.get("classes"), at.key("classes"), unique=True)
    if not classes:
        raise at.key("classes").error("expected the dataset's class names, got an empty list")
    paths = string_list(dataset.get("paths"), at.key("paths"))
    if len(paths) != n_images:
        raise at.key("paths").error(f"{len(paths)} paths for n_images {n_images}")
    positive = text(dataset.get("positive"), at.key("positive"), null=True)
    if positive is not None and positive not in classes:
        raise at.key("positive").error(f"{positive!r} is not one of {classes}")
    text(dataset.get("path"), at.key("path"), null=True)
    if dataset.get("class_counts") is not None:
        counts = mapping(dataset["class_counts"], at.key("class_counts"))
        for name, count in counts.items():
            integer(count, at.key("class_counts").key(str(name)))
    if dataset.get("n_groups") is not None:
        integer(dataset["n_groups"], at.key("n_groups"))
    unit = text(dataset.get("unit"), at.key("unit"), null=True)
    if unit is not None and unit not in UNITS:
        raise at.key("unit").error(f"expected one of {', '.join(UNITS)}, got {unit!r}")
    if dataset.get("groups") is not None:
        groups = string_list(dataset["groups"], at.key("groups"))
        if len(groups) != len(paths):
            raise at.key("groups").error(
                f"{len(groups)} group ids for {len(paths)} paths (one per image)"
            )
    for key in ("excluded", "warnings"):
        if dataset.get(key) is not None:
            expect(dataset[key], list, at.key(key), "a list")
    mapping(dataset.get("balance"), at.key("balance"), null=True)
    expect(dataset.get("synthetic"), bool, at.key("synthetic"), "true or false", null=True)
    return n_images, classes


def check_suite(suite: Mapping[str, Any], at: At) -> None:
    """The ``suite`` table and the parts of its resolved ``config`` reports read."""
    for key in ("name", "description", "path", "sha256"):
        text(suite.get(key), at.key(key), null=True)
    config = mapping(suite.get("config"), at.key("config"), null=True)
    if not config:
        return
    where = at.key("config")
    backbones = mapping(config.get("backbone"), where.key("backbone"), null=True) or {}
    for name, options in backbones.items():
        mapping(options, where.key("backbone").key(str(name)), null=True)
    protocols = config.get("protocol")
    if protocols is None:
        return
    expect(protocols, list, where.key("protocol"), "a list of tables")
    for i, table in enumerate(protocols):
        mapping(table, where.key("protocol").item(i))
        mapping(table.get("settings"), where.key("protocol").item(i).key("settings"), null=True)


def transform_sizes(transforms: Any, at: At) -> dict[str, int]:
    """The ``transforms`` table: per entry, how many samples it covers."""
    if transforms is None:
        return {}
    mapping(transforms, at)
    sizes = {}
    for ref, entry in transforms.items():
        where = at.key(str(ref))
        if isinstance(entry, list):
            sizes[ref] = len(string_list(entry, where))
            continue
        mapping(entry, where)
        keys = string_list(entry.get("keys"), where.key("keys"))
        sizes[ref] = len(
            index_list(entry.get("index"), where.key("index"), len(keys), "a key index")
        )
    return sizes


def check_run_record(record: RunRecord, where: str) -> None:
    """Check every field of ``record`` (read from ``where``); RecordError names the first bad one."""
    at = At(where)
    text(record.run_id, at.key("run_id"), empty=False)
    if record.status not in RUN_STATUSES:
        raise at.key("status").error(
            f"expected one of {', '.join(RUN_STATUSES)}, got {record.status!r}"
        )
    for key in ("started", "finished", "git_revision"):
        text(getattr(record, key), at.key(key), null=True)
    for i, seed in enumerate(record.seeds):
        integer(seed, at.key("seeds").item(i), None)
    check_suite(record.suite, at.key("suite"))
    n_images, classes = check_dataset(record.dataset, at.key("dataset"))
    ctx = CellContext(n_images, classes, transform_sizes(record.transforms, at.key("transforms")))
    for i, cell in enumerate(record.cells):
        check_cell(cell, at.key("cells").item(i), ctx)
        check_cell_metrics(cell, at.key("cells").item(i))
