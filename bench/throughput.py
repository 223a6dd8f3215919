"""Measured throughput, kept in the cache root, for the estimates of ``run --dry-run``.

Every finished job reports how much work it did (``Job.weight``: images, image
steps, fits) and how long it took; the runner folds that into a per-machine
table keyed by (work kind, backbone, device[, detail]). ``--dry-run`` turns a
plan's work into seconds with it. Entries older than :data:`STALE_DAYS`, or
measured by another version of LeukoBench or torch, are not used ("no
estimate yet" until the next run measures again).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write_text

STALE_DAYS = 30
FILE_NAME = "throughput.json"
_MIN_SECONDS = 0.2  # shorter jobs say more about overhead than about speed


def _versions() -> str:
    out = []
    for name in ("leukobench", "torch"):
        try:
            out.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            out.append(f"{name}=?")
    return ",".join(out)


def key_of(kind: str, backbone: str, device: str, detail: str = "") -> str:
    """``extract|alexnet|cpu`` (images/s) or ``train|alexnet|cpu|batch=5`` (image-steps/s)."""
    return "|".join(p for p in (kind, backbone, device, detail) if p)


@dataclass
class Rate:
    """Units of work per second, as last measured (an exponential moving average)."""

    per_s: float
    measured: float  # unix time
    versions: str
    samples: int = 1

    def fresh(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.versions == _versions() and now - self.measured < STALE_DAYS * 86400


class ThroughputStore:
    """The throughput table of one cache root (``<root>/throughput.json``)."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / FILE_NAME
        self._rates: dict[str, Rate] | None = None

    def _load(self) -> dict[str, Rate]:
        if self._rates is None:
            self._rates = {}
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                for key, entry in (raw.get("rates") or {}).items():
                    rate = Rate(**entry)
                    if math.isfinite(rate.per_s) and rate.per_s > 0:
                        self._rates[key] = rate
            except (OSError, ValueError, TypeError, AttributeError):
                self._rates = {}  # missing or unreadable: measured again on the next run
        return self._rates

    def rate(self, key: str) -> float | None:
        """Units per second for ``key``, or None when never measured or stale."""
        found = self._load().get(key)
        return found.per_s if found is not None and found.fresh() else None

    def estimate(self, key: str, units: float) -> float | None:
        """Seconds for ``units`` of work, or None ("no estimate yet")."""
        per_s = self.rate(key)
        return None if per_s is None else units / per_s

    def record(self, key: str, units: float, seconds: float) -> None:
        """Fold one measurement in (jobs shorter than a fraction of a second are ignored)."""
        if units <= 0 or seconds < _MIN_SECONDS or not math.isfinite(seconds):
            return
        rates = self._load()
        new = units / seconds
        old = rates.get(key)
        if old is not None and old.fresh():
            new = 0.7 * new + 0.3 * old.per_s
            rates[key] = Rate(new, time.time(), _versions(), old.samples + 1)
        else:
            rates[key] = Rate(new, time.time(), _versions())

    def record_rate(self, key: str, per_s: float) -> None:
        """Fold in a rate measured elsewhere (e.g. a fold's training images/s)."""
        if math.isfinite(per_s) and per_s > 0:
            self.record(key, per_s * _MIN_SECONDS * 10, _MIN_SECONDS * 10)

    def save(self) -> None:
        """Write the table atomically; a read-only cache only loses the estimates."""
        if self._rates is None:
            return
        payload: dict[str, Any] = {
            "rates": {k: vars(v) for k, v in sorted(self._rates.items())},
        }
        with contextlib.suppress(OSError):
            atomic_write_text(self.path, json.dumps(payload, indent=1, allow_nan=False))


def describe_seconds(seconds: float | None) -> str:
    """``'no estimate yet'``, ``'~40 s'``, ``'~12 min'``, ``'~3.5 h'``."""
    if seconds is None:
        return "no estimate yet"
    if seconds < 90:
        return f"~{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"~{round(seconds / 60)} min"
    return f"~{seconds / 3600:.1f} h"
