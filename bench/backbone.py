"""The runtime object a backbone plugin's factory returns."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUTOCAST_DTYPES = ("bfloat16", "float16", "float32")


# The hints records show (in the backbone's ``extra``); the others never change a number.
RECORDED_HINTS = ("cpu_batch_size", "cpu_compile", "cuda_autocast")


@dataclass(frozen=True)
class RuntimeHints:
    """How a backbone likes to be run: measured speed settings, never part of its features' identity.

    * ``cpu_batch_size``: extraction batch size on the CPU (``None``: 32, or 8 above
      256 px); CUDA always uses 256.
    * ``cpu_compile``: ``torch.compile`` the extractor on the CPU for runs of at least
      5,000 images (only where the plugin measured a gain).
    * ``cuda_autocast``: the autocast dtype on CUDA, ``"bfloat16"`` (default),
      ``"float16"`` or ``"float32"``. It changes the numbers, so it is part of CUDA
      feature-cache keys (``cuda-bf16``, ``cuda-float16``, ...).
    * ``cpu_forward_chunk``: run the CPU lanes' full batches through the network in
      chunks of this many rows, to hold fewer activations (``None``: whole). Used
      only where a probe finds the bits unchanged
      (:mod:`bench.extraction.chunking`), so it is not shown in records either.

    The older way, the same keys in ``Backbone.extra``, still works (read once, when
    the Backbone is made) and is deprecated.
    """

    cpu_batch_size: int | None = None
    cpu_compile: bool = False
    cuda_autocast: str = "bfloat16"
    cpu_forward_chunk: int | None = None

    def __post_init__(self) -> None:
        for name in ("cpu_batch_size", "cpu_forward_chunk"):
            size = getattr(self, name)
            if size is not None and (
                isinstance(size, bool) or not isinstance(size, int) or size < 1
            ):
                raise UserError(f"RuntimeHints.{name} must be a positive integer, got {size!r}")
        if self.cuda_autocast not in AUTOCAST_DTYPES:
            raise UserError(
                f"cuda_autocast {self.cuda_autocast!r} is not a known dtype "
                f"(use {', '.join(AUTOCAST_DTYPES)})"
            )

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> RuntimeHints | None:
        """Hints given the deprecated way, as ``Backbone.extra`` keys; ``None`` when none are."""
        if not any(name in extra for name in RECORDED_HINTS):
            return None
        size = extra.get("cpu_batch_size")
        return cls(
            cpu_batch_size=int(size) if size else None,
            cpu_compile=bool(extra.get("cpu_compile", False)),
            cuda_autocast=str(extra.get("cuda_autocast", "bfloat16")),
        )

    def as_extra(self) -> dict[str, Any]:
        """The hints that differ from the defaults, as the ``extra`` keys records have always shown."""
        default = RuntimeHints()
        return {
            name: getattr(self, name)
            for name in RECORDED_HINTS
            if getattr(self, name) != getattr(default, name)
        }


@dataclass
class Backbone:
    """A feature extractor plus everything needed to feed it and to trust its output.

    ``extractor`` maps a normalised float batch ``(N, 3, input_size, input_size)``
    to ``(N, feature_dim)``. ``make_finetune(num_classes)`` returns a fresh
    trainable ``nn.Module`` (same input) whose last layer is a new
    ``num_classes`` head, found at ``model.get_submodule(head_module)`` (so
    protocols can freeze the body or give the head a larger learning rate).
    ``weights_digest`` identifies the exact weights
    (sha256 of the state dict bytes, or ``"random:<seed>"``). ``hints`` are the
    plugin's measured speed settings (:class:`RuntimeHints`); ``extra`` is free-form
    provenance shown in records.
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
    hints: RuntimeHints = field(default_factory=RuntimeHints)

    def __post_init__(self) -> None:
        if self.hints == RuntimeHints():  # deprecated: hints given as ``extra`` keys
            try:
                legacy = RuntimeHints.from_extra(self.extra)
            except (TypeError, ValueError, UserError) as exc:
                raise UserError(f"backbone {self.name}: {exc}") from None
            if legacy is not None:
                self.hints = legacy

    def preprocessing(self) -> dict[str, Any]:
        """What the images go through before the network (recorded and cache-keyed)."""
        return {
            "input_size": self.input_size,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def describe(self) -> dict[str, Any]:
        """A JSON-able description for result records and feature files.

        ``extra`` lists the hints that differ from the defaults after the plugin's own
        keys, as records showed them when hints were ``extra`` keys.
        """
        extra = dict(self.extra)
        for key, value in self.hints.as_extra().items():
            extra.setdefault(key, value)
        return {
            "name": self.name,
            "layer": self.layer,
            "feature_dim": self.feature_dim,
            "weights": self.weights,
            "weights_digest": self.weights_digest,
            "pretrained": self.pretrained,
            "preprocessing": self.preprocessing(),
            **({"extra": extra} if extra else {}),
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
