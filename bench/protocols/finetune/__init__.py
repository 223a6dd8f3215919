"""The builtin ``finetune`` protocol (Model 2), registered through the entry-point group.

Modules: :mod:`~bench.protocols.finetune.settings` (declared settings),
:mod:`~bench.protocols.finetune.images` (decoded images in memory),
:mod:`~bench.protocols.finetune.optim` (optimiser, seeds, determinism),
:mod:`~bench.protocols.finetune.training` (one fold, resumable),
:mod:`~bench.protocols.finetune.cv` (every fold), :mod:`~bench.protocols.finetune.graph_step`
(a CUDA-graph training step), :mod:`~bench.protocols.finetune.protocol` (the protocol).
"""

from bench.hookspecs import hookimpl
from bench.protocols.finetune.cv import finetune_cv, samples_fingerprint, train_fold
from bench.protocols.finetune.images import ImageBank, carve_validation, normalise_uint8
from bench.protocols.finetune.optim import build_optimizer, derive_seed
from bench.protocols.finetune.protocol import FinetuneProtocol
from bench.protocols.finetune.settings import SETTINGS, FinetuneSettings
from bench.protocols.finetune.training import FinetuneFoldResult
from bench.specs import ProtocolSpec

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
    "normalise_uint8",
    "samples_fingerprint",
    "train_fold",
]


@hookimpl
def leukobench_protocols() -> ProtocolSpec:
    """Model 2: fine-tune each backbone with a new head."""
    return ProtocolSpec("finetune", FinetuneProtocol, FinetuneProtocol.description)
