"""The run record: one ``leukobench run``, with provenance and its cells."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.records.cells import CellRecord, RecordError

SCHEMA = "leukobench.result/1"

_RUN_KEYS = (
    "schema",
    "run_id",
    "status",
    "started",
    "finished",
    "suite",
    "seeds",
    "dataset",
    "environment",
    "git_revision",
    "timings",
    "cells",
    "transforms",
)


@dataclass
class RunRecord:
    """A result record (``leukobench.result/1``); ``cells`` are typed.

    ``dataset``, ``suite``, ``environment`` and ``timings`` stay plain tables (their
    keys are documented in docs/results.md); ``sections`` holds any other top-level
    key, written after the standard ones.
    """

    run_id: str
    status: str = "incomplete"
    started: str | None = None
    finished: str | None = None
    suite: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    dataset: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    git_revision: str | None = None
    timings: dict[str, Any] = field(default_factory=dict)
    cells: list[CellRecord] = field(default_factory=list)
    transforms: dict[str, Any] | None = None
    sections: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # where it was read from or written to (not serialised)

    @property
    def fingerprint(self) -> str | None:
        return self.dataset.get("fingerprint")

    @property
    def dataset_name(self) -> str:
        return str(self.dataset.get("name") or "?")

    def complete_cells(self) -> list[CellRecord]:
        return [c for c in self.cells if c.complete]

    def failed_cells(self) -> list[CellRecord]:
        return [c for c in self.cells if c.status != "complete"]

    def to_json(self) -> dict[str, Any]:
        """The record as stored (same keys and order as records written before typing)."""
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "status": self.status,
            "started": self.started,
            "finished": self.finished,
            "suite": self.suite,
            "seeds": self.seeds,
            "dataset": self.dataset,
            "environment": self.environment,
            "git_revision": self.git_revision,
            "timings": self.timings,
            "cells": [c.to_json() for c in self.cells],
        }
        if self.transforms is not None:
            out["transforms"] = self.transforms
        out.update(self.sections)
        return out

    @classmethod
    def from_json(cls, d: Any, where: str) -> RunRecord:
        """Read a stored record; :class:`RecordError` names ``where`` and the bad field."""
        if not isinstance(d, Mapping):
            raise RecordError(f"{where}: not a LeukoBench result record (not a JSON object)")
        if d.get("schema") != SCHEMA:
            raise RecordError(
                f"{where}: not a LeukoBench result record "
                f"(schema {d.get('schema')!r}, expected {SCHEMA!r})"
            )
        for key in ("run_id", "dataset", "cells"):
            if key not in d:
                raise RecordError(f"{where}: result record lacks the key {key!r}")
        for key, kind in (("dataset", Mapping), ("cells", list)):
            if not isinstance(d[key], kind):
                raise RecordError(f"{where}: field {key!r} has the wrong type")
        cells = [CellRecord.from_json(c, f"{where}: cells[{i}]") for i, c in enumerate(d["cells"])]

        def table(key: str) -> dict[str, Any]:
            value = d.get(key) or {}
            if not isinstance(value, Mapping):
                raise RecordError(f"{where}: field {key!r}: expected an object")
            return dict(value)

        seeds = d.get("seeds") or []
        if not isinstance(seeds, list):
            raise RecordError(f"{where}: field 'seeds': expected a list")
        for key in ("run_id", "status"):
            value = d.get(key)
            if not isinstance(value, str) and (key == "run_id" or value is not None):
                raise RecordError(f"{where}: {key}: expected a string, got {value!r:.60}")
        return cls(
            run_id=d["run_id"],
            status=d.get("status") or "incomplete",
            started=d.get("started"),
            finished=d.get("finished"),
            suite=table("suite"),
            seeds=list(seeds),
            dataset=table("dataset"),
            environment=table("environment"),
            git_revision=d.get("git_revision"),
            timings=table("timings"),
            cells=cells,
            transforms=d.get("transforms"),
            sections={k: v for k, v in d.items() if k not in _RUN_KEYS},
        )
