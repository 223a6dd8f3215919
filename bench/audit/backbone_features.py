"""Backbone features for the audit, through the public extraction API and the feature cache.

The cache keys are exactly those ``run`` and ``extract`` use (same backbone,
device numerics, transforms, image digests), so features computed by either are
reused here and the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.imageset import Samples


@dataclass
class FeatureSource:
    """A built backbone and the cache/device settings every extraction of one audit shares."""

    name: str
    backbone: Any
    cache: Any
    device: str
    progress: bool
    decoded: Any
    n_cached: int = 0
    n_computed: int = 0

    @property
    def description(self) -> str:
        pretrained = "ImageNet" if getattr(self.backbone, "pretrained", True) else "random init"
        return f"{self.name} ({pretrained}, {self.backbone.feature_dim}-d)"


def open_backbone(
    name: str,
    *,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    device: str = "auto",
    progress: bool = True,
) -> FeatureSource:
    """Build backbone ``name`` from the registry, with the on-disk feature cache."""
    from bench.extraction import DecodedImages
    from bench.feature_cache import FeatureCache
    from bench.registry import get_registry

    backbone = get_registry().build_backbone(name)
    cache = FeatureCache(cache_dir) if use_cache else None
    return FeatureSource(name, backbone, cache, device, progress, DecodedImages())


def features_of(source: FeatureSource, samples: Samples, digests: Sequence[str]) -> np.ndarray:
    """``(len(samples), d)`` float32 features (cached ones read, missing ones computed)."""
    from bench.extraction import extract_features

    result = extract_features(
        samples,
        source.backbone,
        digests=list(digests),
        cache=source.cache,
        device=source.device,
        progress=source.progress,
        decoded=source.decoded,
    )
    source.n_cached += result.n_cached
    source.n_computed += result.n_computed
    return np.asarray(result.features, dtype=np.float32)
