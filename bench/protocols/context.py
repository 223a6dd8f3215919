"""One run context: what every job of a run shares, resolved once and passed explicitly.

There is no ``os.environ`` side channel: the CLI's ``--cache`` and
``$LEUKOBENCH_CACHE`` only choose the :class:`CacheRoot` a context is built with,
and ``run_suite(..., cache_dir=D)`` puts everything (features, predictions,
run state) under ``D``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CacheRoot:
    """The folder that holds everything a run computes and may reuse.

    ``features/`` (feature packs), ``predictions/`` (Model 1 fold predictions),
    ``runs/<key>/`` (resumable fine-tuning state per cell), ``validated/``
    (image verdicts), ``weights-digests.json``. Picklable: executors send it to
    workers, which must see the same folder (shared storage).
    """

    path: Path

    @classmethod
    def default(cls, explicit: Path | str | None = None) -> CacheRoot:
        """``explicit``, else ``$LEUKOBENCH_CACHE``, else ``~/.cache/leukobench``."""
        if explicit is not None:
            return cls(Path(explicit).expanduser())
        env = os.environ.get("LEUKOBENCH_CACHE")
        return cls(Path(env).expanduser() if env else Path.home() / ".cache" / "leukobench")

    def features(self):  # -> bench.feature_cache.FeatureCache
        """A feature cache under this root (a new object: it indexes lazily)."""
        from bench.feature_cache import FeatureCache

        return FeatureCache(self.path)

    def predictions(self):  # -> bench.prediction_cache.PredictionCache
        """The Model 1 prediction cache under this root."""
        from bench.prediction_cache import PredictionCache

        return PredictionCache(self.path)

    def run_dir(self, suite_digest: str, fingerprint: str, cell_id: str) -> Path:
        """A stable folder for one cell's resumable work (same suite + data -> same folder).

        The key is the one ``bench.cache_paths.run_workdir`` always used, so runs
        interrupted before this class existed still resume.
        """
        key = hashlib.sha256(f"{suite_digest}|{fingerprint}|{cell_id}".encode()).hexdigest()[:20]
        return self.path / "runs" / key
