"""The table keys most protocols share (``backbones``, ``folds``, ``split``, ...), declared once.

:func:`resolve_table` turns a ``[[protocol]]`` table into its resolved form the
way the suite loader always has (defaults first, given keys over them, then
``folds``/``holdout``), so suite digests — which name runs and key resumable
work — stay the same for existing suites.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bench.errors import UserError
from bench.protocols.base import REQUIRED, Setting, check_table

if TYPE_CHECKING:
    from bench.protocols.context import RunContext

BACKBONES = Setting(
    "backbones", list, REQUIRED, "backbone names (e.g. alexnet, timm/resnet18)", items=str
)
CLASSIFIERS = Setting("classifiers", list, [], "classifier names (e.g. svm-cubic, knn1)", items=str)
FOLDS = Setting("folds", int, None, "k of (grouped) k-fold cross-validation", minimum=2)
HOLDOUT = Setting(
    "holdout",
    float,
    None,
    "test fraction of a hold-out split (default 0.2 when folds is not given)",
    minimum=0,
    maximum=0.5,
    exclusive_minimum=True,
)
SPLIT = Setting(
    "split",
    str,
    "grouped",
    "grouped (by source image or patient) or paper-leaky (augment, then split: inflated)",
    choices=("grouped", "paper-leaky"),
)
AUGMENT = Setting("augment", bool, True, "use the suite's [augment] copies in this protocol")
SETTINGS = Setting("settings", dict, {}, "the protocol's own settings (see its settings list)")
SAVE_MODEL = Setting(
    "save_model", bool, False, "save each cell's model under results/models/<run id>/"
)

#: Keys every resolved table has, with their defaults (the suite loader's historic defaults).
TABLE_DEFAULTS: dict[str, Any] = {
    "classifiers": [],
    "split": "grouped",
    "augment": True,
    "settings": {},
    "save_model": False,
}


def resolve_table(
    declared: Sequence[Setting],
    table: Mapping[str, Any],
    where: str,
    *,
    default_folds: int | None = None,
) -> dict[str, Any]:
    """Check ``table`` against ``declared`` and resolve it (see the module docstring).

    ``where`` names the table (``"suite.toml: protocol[0]"``). The result is
    ``{**TABLE_DEFAULTS, **table}``, then ``folds = default_folds`` (when given
    and neither split key is set) or ``holdout = 0.2``. The settings sub-table is
    left for the protocol to check.
    """
    rest = {k: v for k, v in table.items() if k != "kind"}
    check_table(declared, rest, where, fill_defaults=False)
    out = {**copy.deepcopy(TABLE_DEFAULTS), **copy.deepcopy(dict(table))}
    if not out.get("backbones"):
        raise UserError(f"{where}.backbones: missing: a list of backbone names")
    for key in ("backbones", "classifiers"):
        names = out.get(key) or []
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UserError(
                f"{where}.{key}: {', '.join(map(repr, twice))} listed twice; list each once"
            )
    if "holdout" in out and "folds" in out:
        raise UserError(f"{where}: give either folds or holdout, not both")
    if default_folds is not None and "holdout" not in out:
        out.setdefault("folds", default_folds)
    if "holdout" not in out and "folds" not in out:
        out["holdout"] = 0.2
    return out


def backbone_image_reads(ctx: RunContext, table: Mapping[str, Any]) -> int:
    """``Protocol.image_reads`` of a table with ``backbones`` and ``augment``.

    Each backbone's extraction reads every source image once; augmented copies read it again.
    """
    return len(table["backbones"]) * (2 if ctx.augments(table["augment"]) else 1)
