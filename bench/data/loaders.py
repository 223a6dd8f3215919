"""Dataset loaders: folders, manifests and known dataset layouts -> ImageSet."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """LeukoBench's cache folder: ``$LEUKOBENCH_CACHE`` or ``~/.cache/leukobench``."""
    env = os.environ.get("LEUKOBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "leukobench"
