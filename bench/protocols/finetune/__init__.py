"""The builtin ``finetune`` protocol (Model 2), registered through the entry-point group.

Modules: :mod:`~bench.protocols.finetune.settings` (declared settings),
:mod:`~bench.protocols.finetune.images` (decoded images in memory),
:mod:`~bench.protocols.finetune.optim` (optimiser, seeds, determinism),
:mod:`~bench.protocols.finetune.training` (one fold, resumable),
:mod:`~bench.protocols.finetune.cv` (every fold), :mod:`~bench.protocols.finetune.graph_step`
(a CUDA-graph training step), :mod:`~bench.protocols.finetune.protocol` (the protocol).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bench.hookspecs import hookimpl
from bench.protocols.finetune.protocol import FinetuneProtocol
from bench.protocols.finetune.settings import SETTINGS, FinetuneSettings
from bench.specs import ProtocolSpec

if TYPE_CHECKING:
    from bench.protocols.finetune.cv import finetune_cv, samples_fingerprint, train_fold
    from bench.protocols.finetune.images import ImageBank, carve_validation
    from bench.protocols.finetune.optim import build_optimizer, derive_seed
    from bench.protocols.finetune.training import FinetuneFoldResult

# The torch-side names load on first use, so registering the protocol (every
# run, Model 1 alone included) does not import torch (0.5 GB resident).
_LAZY = {
    "finetune_cv": "cv",
    "samples_fingerprint": "cv",
    "train_fold": "cv",
    "ImageBank": "images",
    "carve_validation": "images",
    "build_optimizer": "optim",
    "derive_seed": "optim",
    "FinetuneFoldResult": "training",
}


def __getattr__(name: str) -> Any:
    """The torch-side names of this package, imported when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "SETTINGS",
    "FinetuneFoldResult",
    "FinetuneProtocol",
    "FinetuneSettings",
    "ImageBank",
    "build_optimizer",
    "carve_validation",
    "derive_seed",
    "finetune_cv",
    "leukobench_protocols",
    "samples_fingerprint",
    "train_fold",
]


@hookimpl
def leukobench_protocols() -> ProtocolSpec:
    """Model 2: fine-tune each backbone with a new head."""
    return ProtocolSpec("finetune", FinetuneProtocol, FinetuneProtocol.description)
