"""Where LeukoBench keeps what it computes (features, validation, fine-tuning state)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_root() -> Path:
    """LeukoBench's cache folder: ``$LEUKOBENCH_CACHE`` or ``~/.cache/leukobench``."""
    env = os.environ.get("LEUKOBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "leukobench"


def run_workdir(suite_digest: str, fingerprint: str, cell_id: str) -> Path:
    """A stable folder for one cell's resumable work (same suite + data -> same folder)."""
    key = hashlib.sha256(f"{suite_digest}|{fingerprint}|{cell_id}".encode()).hexdigest()[:20]
    return cache_root() / "runs" / key
