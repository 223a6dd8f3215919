"""The protocol interface: one typed unit of work from suite table to cell records.

A *protocol* is what a suite's ``[[protocol]]`` table names with ``kind``: Model 1
(``features``), Model 2 (``finetune``), or any protocol a plugin registers through
``leukobench_protocols()``. The engine knows protocols only through this
interface; nothing outside a protocol's own folder switches on its name.

The life of a protocol table, in order:

1. :meth:`Protocol.validate` — when the suite loads, before any image is read:
   every key of the table and of its ``settings`` sub-table is checked against the
   protocol's declared :class:`Setting` s (type, bounds, choices, NaN/inf refused,
   close-match suggestions), and plugin names against the registry.
2. :meth:`Protocol.cells` — the cells (rows of Table 1) the table yields per seed.
3. :meth:`Protocol.plan` — ``run --dry-run`` rows: what would run, what is cached,
   an estimate of the work.
4. :meth:`Protocol.jobs` — the work as :class:`Job` s: plain, picklable values
   saying what to compute on which data with which seed, and which jobs each
   depends on. An executor (local, Ray, ...) runs them.
5. :meth:`Protocol.run_job` — one job, given a :class:`~bench.protocols.context.RunContext`
   and the results of the jobs it depends on. Results must be picklable.
6. :meth:`Protocol.assemble` — job results -> typed :class:`~bench.records.CellRecord` s.

Reports ask the protocol for labels (:meth:`Protocol.row_label`,
:meth:`Protocol.method_label`) instead of switching on its name.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from bench.errors import UserError
from bench.protocols.resources import Resources
from bench.specs import ProtocolSpec

if TYPE_CHECKING:
    from pathlib import Path

    from bench.protocols.context import RunContext
    from bench.records import CellRecord, RunRecord
    from bench.registry import Registry
    from bench.render import Table
    from bench.suite import Cell

__all__ = ["REQUIRED", "Job", "PlanRow", "Protocol", "ProtocolSpec", "Resources", "Setting"]

_TYPE_WORDS: dict[Any, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


def _suggest(name: str, known: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return ("; did you mean " + " or ".join(repr(c) for c in close) + "?") if close else ""


@dataclass(frozen=True)
class Setting:
    """One key a protocol accepts, declared once: type, default, bounds, description.

    ``type`` is ``str``, ``int``, ``float`` (ints accepted), ``bool``, ``list`` or
    ``dict``. ``default`` of :data:`REQUIRED` makes the key mandatory. ``minimum`` /
    ``maximum`` bound numbers (``exclusive_minimum`` / ``exclusive_maximum`` make the
    bound strict); floats are always refused when NaN or infinite. ``choices`` lists
    the allowed values (strings are compared as given). ``items`` is the type of each
    element of a list. The description is the documentation (``leukobench list
    protocols`` and docs/suites.md show it).
    """

    name: str
    type: type
    default: Any
    description: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    items: type | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: Any, where: str) -> Any:
        """``value`` if it is allowed, else :class:`UserError` naming ``where`` (file: key path)."""
        expected = self.type
        ok = isinstance(value, expected)
        if expected is float:
            ok = isinstance(value, (int, float))
        if expected in (int, float) and isinstance(value, bool):
            ok = False
        if not ok:
            raise UserError(
                f"{where}: expected {_TYPE_WORDS.get(expected, expected.__name__)}, got {value!r}"
            )
        if expected is float and not math.isfinite(float(value)):
            raise UserError(f"{where}: {value!r} is not a finite number")
        if expected in (int, float):
            v = float(value)
            lo, hi = self.minimum, self.maximum
            if lo is not None and (v < lo or (self.exclusive_minimum and v == lo)):
                op = ">" if self.exclusive_minimum else ">="
                raise UserError(f"{where}: {value!r} is out of range (must be {op} {lo:g})")
            if hi is not None and (v > hi or (self.exclusive_maximum and v == hi)):
                op = "<" if self.exclusive_maximum else "<="
                raise UserError(f"{where}: {value!r} is out of range (must be {op} {hi:g})")
        if self.choices is not None and value not in self.choices:
            hint = _suggest(str(value), [str(c) for c in self.choices]) or (
                f" (allowed: {', '.join(str(c) for c in self.choices)})"
            )
            raise UserError(f"{where}: {value!r} is not allowed{hint}")
        if self.items is not None and isinstance(value, list):
            for i, item in enumerate(value):
                Setting(f"{self.name}[{i}]", self.items, None, "").check(item, f"{where}[{i}]")
        return value

    def describe(self) -> str:
        """One line for listings: ``epochs (int, default 6, >= 1): passes over the data``."""
        bits = [getattr(self.type, "__name__", str(self.type))]
        bits.append("required" if self.required else f"default {self.default!r}")
        if self.choices is not None:
            bits.append("one of " + "|".join(str(c) for c in self.choices))
        if self.minimum is not None:
            bits.append(f"{'>' if self.exclusive_minimum else '>='} {self.minimum:g}")
        if self.maximum is not None:
            bits.append(f"{'<' if self.exclusive_maximum else '<='} {self.maximum:g}")
        return f"{self.name} ({', '.join(bits)}): {self.description}"


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Default of a :class:`Setting` that must be given.
REQUIRED: Any = _Required()


def check_table(
    declared: Sequence[Setting],
    given: Mapping[str, Any],
    where: str,
    *,
    fill_defaults: bool = True,
) -> dict[str, Any]:
    """Validate ``given`` against ``declared``; return it with defaults filled in.

    Unknown keys fail with close-match suggestions; ``where`` is the key path
    prefix, e.g. ``"suites/x.toml: protocol[0].settings"``. With
    ``fill_defaults=False`` only the given keys are returned (validated).
    """
    if not isinstance(given, Mapping):
        raise UserError(f"{where}: expected a table")
    by_name = {s.name: s for s in declared}
    for key in given:
        if key not in by_name:
            hint = _suggest(key, by_name) or f" (allowed: {', '.join(by_name) or 'none'})"
            raise UserError(f"{where}.{key}: unknown key{hint}")
    out: dict[str, Any] = {}
    for s in declared:
        if s.name in given:
            out[s.name] = s.check(given[s.name], f"{where}.{s.name}")
        elif s.required:
            raise UserError(f"{where}.{s.name}: missing ({s.description})")
        elif fill_defaults and s.default is not None:
            out[s.name] = s.default
    return out


@dataclass(frozen=True)
class Job:
    """One picklable piece of a protocol's work.

    ``id`` is unique within a run and stable across runs of the same suite and data
    (executors and progress displays name jobs by it). ``kind`` is the protocol's own
    word for it (``"extract"``, ``"fit"``, ``"train-fold"``, ...). ``payload`` holds
    plain values only (str, int, float, bool, None, lists, dicts, tuples, numpy
    arrays): what to compute, on which data, with which seed. ``deps`` are the ids
    of jobs whose results :meth:`Protocol.run_job` receives as ``inputs``.
    ``cells`` are the ids of the cells this job contributes to.
    """

    id: str
    protocol: str
    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    deps: tuple[str, ...] = ()
    resources: Resources = Resources()
    cells: tuple[str, ...] = ()
    weight: float = 1.0  # relative cost (images, image-steps, fits), for progress and ETAs


@dataclass
class PlanRow:
    """One row of ``run --dry-run``: a protocol x backbone x seed and what it would do."""

    protocol: int
    kind: str
    backbone: str
    seed: int
    what: str
    split: str
    leaky: bool
    samples: int
    status: str
    ok: bool = True  # False when a cell cannot be built (dry-run then exits non-zero)
    estimate_s: float | None = None  # seconds from this machine's measured throughput
    work: str = ""  # what the estimate is of ("1,204 images", "9,650 image-steps")
    trains: bool = False  # trains a network (hours on a CPU: the dry run warns)
    notes: list[str] = field(default_factory=list)  # one-line advice printed under the plan


class Protocol(ABC):
    """Base class of every protocol (see the module docstring for the life cycle).

    Class attributes declare the protocol: ``name`` (the suite's ``kind``),
    ``model`` (the Table 1 family, e.g. ``"Model 1"``), ``description``,
    ``table_keys`` (the keys its ``[[protocol]]`` table accepts besides ``kind``)
    and ``settings`` (the keys of its ``settings`` sub-table).
    """

    name: ClassVar[str]
    model: ClassVar[str] = "Model 1"
    description: ClassVar[str] = ""
    table_keys: ClassVar[tuple[Setting, ...]] = ()
    settings: ClassVar[tuple[Setting, ...]] = ()

    def validate(self, table: Mapping[str, Any], where: str, registry: Registry | None) -> dict:
        """The resolved table (``kind`` included), or :class:`UserError` naming ``where.key``.

        Called when the suite loads, before any image is read. The default checks
        ``table_keys`` (defaults filled) and the ``settings`` sub-table (only the given
        keys are kept: the resolved suite is digested, so adding a default must not
        change existing digests). Override to add cross-key checks.
        """
        rest = {k: v for k, v in table.items() if k != "kind"}
        out = {"kind": self.name, **check_table(self.table_keys, rest, where)}
        if "settings" in out:
            out["settings"] = check_table(
                self.settings, out["settings"], f"{where}.settings", fill_defaults=False
            )
        return out

    def resolved_settings(self, table: Mapping[str, Any]) -> dict[str, Any]:
        """The ``settings`` sub-table with every default filled in."""
        given = table.get("settings") or {}
        return check_table(self.settings, given, f"protocol {self.name!r} settings")

    def image_reads(self, ctx: RunContext, table: Mapping[str, Any]) -> int:
        """How often one seed of ``table`` reads each source image (0 if it reads none).

        The run keeps its in-run memo of decoded images only when the suite reads
        an image more than once in all (more tables, seeds or backbones, augmented
        copies, training epochs); a single pass then decodes each image once and
        holds none of them. The default, 2, assumes reuse: override it to say less.
        """
        return 2

    @abstractmethod
    def cells(self, table: Mapping[str, Any], index: int, seed: int) -> list[Cell]:
        """The cells (rows of Table 1) this table yields for one seed."""

    @abstractmethod
    def plan(
        self, ctx: RunContext, table: Mapping[str, Any], index: int, seed: int
    ) -> list[PlanRow]:
        """Dry-run rows: what would run, what the caches already hold, an estimate."""

    @abstractmethod
    def jobs(
        self, ctx: RunContext, table: Mapping[str, Any], index: int, seed: int, cells: list[Cell]
    ) -> list[Job]:
        """The work for ``cells`` as jobs (dependencies before dependants)."""

    @abstractmethod
    def run_job(self, ctx: RunContext, job: Job, inputs: Mapping[str, Any]) -> Any:
        """Run one job; ``inputs`` maps each of ``job.deps`` to its result. Picklable result."""

    @abstractmethod
    def assemble(
        self,
        ctx: RunContext,
        table: Mapping[str, Any],
        index: int,
        seed: int,
        cells: list[Cell],
        results: Mapping[str, Any],
    ) -> list[CellRecord]:
        """Typed cell records from the results of this table's jobs (by job id)."""

    def row_label(self, cell: CellRecord) -> str:
        """Table 1 row text for a cell, e.g. ``"alexnet + SVM (cubic)"``."""
        return f"{cell.backbone} + {cell.label}"

    def method_label(self, cell: CellRecord) -> str:
        """Short method name for leaderboards and comparisons, e.g. ``"SVM (cubic)"``."""
        return cell.label

    # -- optional report extensions (see bench/protocol_reports.py) -------------------------
    def report_tables(self, record: RunRecord, cells: list[CellRecord]) -> list[Table]:
        """Extra tables ``report`` shows for this protocol's complete cells of ``record``.

        Default: none. E.g. the learning curve's points or the tuned settings per fold.
        """
        return []

    def figures(self, record: RunRecord, cells: list[CellRecord], out_dir: Path) -> list[Path]:
        """Extra PNG figures ``report --figures DIR`` writes for these cells (default: none)."""
        return []
