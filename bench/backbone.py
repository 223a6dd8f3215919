"""The runtime object a backbone plugin's factory returns."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Backbone:
    """A feature extractor plus everything needed to feed it and to trust its output.

    ``extractor`` maps a normalised float batch ``(N, 3, input_size, input_size)``
    to ``(N, feature_dim)``. ``make_finetune(num_classes)`` returns a fresh
    trainable ``nn.Module`` (same input) whose last layer is a new
    ``num_classes`` head, found at ``model.get_submodule(head_module)`` (so
    protocols can freeze the body or give the head a larger learning rate).
    ``weights_digest`` identifies the exact weights
    (sha256 of the state dict bytes, or ``"random:<seed>"``).
    """

    name: str
    input_size: int
    feature_dim: int
    extractor: Any  # torch.nn.Module
    make_finetune: Callable[[int], Any]
    weights: str
    weights_digest: str
    pretrained: bool
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    layer: str = ""
    head_module: str = ""  # dotted path of the new head inside make_finetune(k)'s module
    extra: dict[str, Any] = field(default_factory=dict)

    def preprocessing(self) -> dict[str, Any]:
        """What the images go through before the network (recorded and cache-keyed)."""
        return {
            "input_size": self.input_size,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def describe(self) -> dict[str, Any]:
        """A JSON-able description for result records and feature files."""
        return {
            "name": self.name,
            "layer": self.layer,
            "feature_dim": self.feature_dim,
            "weights": self.weights,
            "weights_digest": self.weights_digest,
            "pretrained": self.pretrained,
            "preprocessing": self.preprocessing(),
            **({"extra": self.extra} if self.extra else {}),
        }

    def cache_identity(self) -> str:
        """Digest of everything about the backbone that changes its features."""
        ident = {
            "name": self.name,
            "layer": self.layer,
            "weights_digest": self.weights_digest,
            **self.preprocessing(),
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]
