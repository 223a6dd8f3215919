"""Result records: one JSON file per run, atomically written, never overwritten.

The schema is documented in ``docs/results.md`` (``leukobench.result/1``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import re
import subprocess
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write_text
from bench.errors import UserError
from bench.strict_json import dumps as strict_dumps

SCHEMA = "leukobench.result/1"
PACKAGES = (
    "leukobench",
    "torch",
    "torchvision",
    "timm",
    "scikit-learn",
    "xgboost",
    "numpy",
    "pillow",
)


def compact_history(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-iteration training rows as columns (a few bytes per iteration in a record).

    ``{"iteration": [...], "epoch": [...], "loss": [...], "accuracy": [...],
    "lr": x | [...]}``: losses to 6 significant digits, ``lr`` a single number
    when it never changed. :func:`history_rows` turns it back into rows.
    """
    if not rows:
        return {}
    cols: dict[str, Any] = {}
    for key in ("iteration", "epoch", "loss", "accuracy", "lr"):
        values = [r.get(key) for r in rows]
        if key == "loss":
            values = [None if v is None else float(f"{v:.6g}") for v in values]
        if key == "lr" and len(set(values)) == 1:
            cols[key] = values[0]
        else:
            cols[key] = values
    return cols


def history_rows(history: Any) -> list[dict[str, Any]]:
    """Training rows from either layout: a list of row dicts, or :func:`compact_history`'s."""
    if not history:
        return []
    if isinstance(history, list):
        return history
    n = max(len(v) for v in history.values() if isinstance(v, list))
    return [{k: (v[i] if isinstance(v, list) else v) for k, v in history.items()} for i in range(n)]


def compact_transforms(keys: list[str]) -> dict[str, list]:
    """Per-sample transform keys as ``{"keys": distinct keys, "index": one int per sample}``."""
    distinct: dict[str, int] = {}
    index = [distinct.setdefault(k, len(distinct)) for k in keys]
    return {"keys": list(distinct), "index": index}


def transform_keys(entry: Any) -> list[str]:
    """Per-sample transform keys from a record's ``transforms`` entry (either layout)."""
    if isinstance(entry, dict):
        return [entry["keys"][i] for i in entry["index"]]
    return list(entry)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str = "cpu") -> dict[str, Any]:
    """Versions, device and CPU/GPU names for a result record."""
    import torch

    gpu = None
    if device.startswith("cuda") and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": device,
        "gpu": gpu,
        "packages": _package_versions(),
    }


def git_revision(start: Path | None = None) -> str | None:
    """The project's git revision (``+dirty`` when the tree has changes), if known."""
    here = start or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def new_run_id(suite_name: str, config_digest: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{suite_name}-{config_digest[:6]}"


_FLAT_LIST = re.compile(r"\[\s*([^\[\]{}]*?)\s*\]")


def dumps(record: dict[str, Any]) -> str:
    """Strict JSON (NaN/inf as null) with nested tables indented but lists of scalars on one line."""
    text = strict_dumps(record, indent=1)
    return _FLAT_LIST.sub(lambda m: "[" + re.sub(r"\s*\n\s*", " ", m.group(1)) + "]", text)


def write_record(record: dict[str, Any], results_dir: Path) -> Path:
    """Write ``record`` as ``<results_dir>/<run_id>.json``; never overwrite (suffix -2, -3...)."""
    results_dir = Path(results_dir)
    text = dumps(record)
    stem = record["run_id"]
    for attempt in range(1, 1000):
        path = results_dir / (f"{stem}.json" if attempt == 1 else f"{stem}-{attempt}.json")
        try:
            return atomic_write_text(path, text, overwrite=False)
        except FileExistsError:
            continue
    raise UserError(f"cannot find a free file name for {stem} in {results_dir}")


def update_record(record: dict[str, Any], path: Path) -> Path:
    """Rewrite the record at ``path`` (the same run, now further along)."""
    text = dumps(record)
    return atomic_write_text(path, text, overwrite=True)


def load_record(path: Path) -> dict[str, Any]:
    """Read a result record as a plain dict; UserError naming the file when it is not one.

    Checks the schema and the top-level keys only; :func:`bench.records.read_run_record`
    (what reports, the gate, the leaderboard and the API use) checks every field.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such result file") from None
    except RecursionError:
        raise UserError(f"{path}: not a readable JSON result record (nested too deeply)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable JSON result record ({exc})") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        found = record.get("schema") if isinstance(record, dict) else type(record).__name__
        raise UserError(
            f"{path}: not a LeukoBench result record (schema {found!r}, expected {SCHEMA!r})"
        )
    for key in ("run_id", "dataset", "cells"):
        if key not in record:
            raise UserError(f"{path}: result record lacks the key {key!r}")
    return record


def iter_records(results_dir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every readable record under ``results_dir`` (recursively), sorted by path."""
    for path in sorted(Path(results_dir).rglob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            yield path, load_record(path)
        except UserError:
            continue
