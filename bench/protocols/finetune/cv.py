"""Model 2 over splits: :func:`finetune_cv` (every fold) and :func:`train_fold` (one fold).

Each fold trains in ``workdir/fold-NN/`` and is keyed by what it is (samples,
settings, seed, backbone, mask, fold, train and test indices), so a fold is
resumable on its own — by a later run, or by another process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bench.backbone import Backbone
from bench.checkpoint import SCHEMA
from bench.data.imageset import Samples
from bench.malloc_tuning import tuned_malloc
from bench.progress import progress_bar
from bench.protocols.finetune.images import ImageBank
from bench.protocols.finetune.optim import deterministic, sigterm_as_interrupt, torch_device
from bench.protocols.finetune.settings import FinetuneSettings
from bench.protocols.finetune.training import FinetuneFoldResult, FoldTrainer

if TYPE_CHECKING:
    from bench.protocols.context import RunContext


# -- the protocol -----------------------------------------------------------------------------
def _index_digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(a, dtype=np.int64).tobytes()).hexdigest()[:16]


def samples_fingerprint(samples: Samples) -> str:
    """Digest of what the samples are: relative paths, labels, classes, transforms."""
    s = samples.imageset
    h = hashlib.sha256()
    h.update(json.dumps([list(s.classes), s.positive]).encode())
    for i in range(len(samples)):
        src = int(samples.source[i])
        h.update(f"{s.relpath(src)}|{int(s.labels[src])}|{samples.transforms[i].key()}\n".encode())
    return h.hexdigest()


def finetune_cv(
    samples: Samples,
    backbone_factory: Callable[[], Backbone] | Backbone,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    settings: FinetuneSettings,
    *,
    mask: Any = None,
    workdir: Path,
    seed: int = 0,
    progress: bool = True,
    positive_index: int | None = None,
    backbone_name: str | None = None,
    backbone_options: dict[str, Any] | None = None,
    dataset_fingerprint: str | None = None,
    decoded: Any = None,
    digests: Sequence[str] | None = None,
) -> list[FinetuneFoldResult]:
    """Fine-tune on each ``(train_idx, test_idx)`` split of ``samples``; resumable in ``workdir``.

    ``backbone_name``/``backbone_options`` are what the registry needs to rebuild
    the architecture at predict time (defaults: ``backbone.name`` and ``{}``).
    ``mask`` (rectangles for :func:`bench.data.mask.apply_mask`) is applied to
    every decoded source image, training and test. With ``decoded`` (the run's
    :class:`bench.extraction.DecodedImages`) and ``digests`` (content digest of each
    image of ``samples.imageset``), decoded images are shared through that memo.
    Returns one result per split (each fold as :func:`train_fold` trains it).
    """
    backbone = backbone_factory if isinstance(backbone_factory, Backbone) else backbone_factory()
    return [
        train_fold(
            samples,
            backbone,
            splits,
            fold,
            settings,
            mask=mask,
            workdir=workdir,
            seed=seed,
            progress=progress,
            positive_index=positive_index,
            backbone_name=backbone_name,
            backbone_options=backbone_options,
            dataset_fingerprint=dataset_fingerprint,
            decoded=decoded,
            digests=digests,
        )
        for fold in range(len(splits))
    ]


def train_fold(
    samples: Samples,
    backbone: Backbone,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    fold: int,
    settings: FinetuneSettings,
    *,
    mask: Any = None,
    workdir: Path,
    seed: int = 0,
    progress: bool = True,
    positive_index: int | None = None,
    backbone_name: str | None = None,
    backbone_options: dict[str, Any] | None = None,
    dataset_fingerprint: str | None = None,
    decoded: Any = None,
    digests: Sequence[str] | None = None,
) -> FinetuneFoldResult:
    """Fine-tune fold ``fold`` of ``splits`` (resumable in ``workdir/fold-NN/``).

    The fold's key and its result do not depend on the other folds, so folds can
    run in any order, in any process that sees ``workdir``.
    """
    settings.validate()
    device = torch_device(settings.device)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    imageset = samples.imageset
    if digests is not None and len(digests) != len(imageset):
        raise ValueError(f"{len(digests)} digests for {len(imageset)} images")
    if positive_index is None:
        positive_index = imageset.positive_index
    train_idx, test_idx = (np.asarray(s) for s in splits[fold])
    needed = np.unique(np.concatenate([np.asarray(s, dtype=np.int64) for s in splits[fold]]))
    bank = ImageBank(
        samples,
        samples.source[needed],
        backbone.input_size,
        backbone.interpolation,
        backbone.mean,
        backbone.std,
        mask=mask,
        decoded=decoded,
        digests=digests,
    )
    common = {
        "schema": SCHEMA,
        "samples": samples_fingerprint(samples),
        "settings": settings.as_dict(),
        "seed": seed,
        "backbone": backbone.describe(),
        "mask": mask,
    }
    trainer = FoldTrainer(
        samples=samples,
        backbone=backbone,
        settings=settings,
        device=device,
        bank=bank,
        seed=seed,
        positive_index=positive_index,
        meta_base={
            "kind": "finetune",
            "classes": list(imageset.classes),
            "positive": imageset.positive,
            "num_classes": len(imageset.classes),
            "backbone": {
                "name": backbone_name or backbone.name,
                "options": dict(backbone_options or {}),
                "info": backbone.describe(),
                "head_module": backbone.head_module,
            },
            "preprocessing": {**backbone.preprocessing(), "mask": mask},
            "settings": settings.as_dict(),
            "seed": seed,
            "dataset": imageset.name,
            "dataset_fingerprint": dataset_fingerprint or common["samples"],
            "torch": torch.__version__,
        },
    )
    key_src = {
        **common,
        "fold": fold,
        "train": _index_digest(train_idx),
        "test": _index_digest(test_idx),
    }
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True, default=str).encode()).hexdigest()
    heap = tuned_malloc() if device.type == "cpu" else contextlib.nullcontext()
    with heap, sigterm_as_interrupt(), deterministic(device), _bar(progress) as bar:
        return trainer.run_fold(
            fold, len(splits), train_idx, test_idx, workdir / f"fold-{fold:02d}", key, bar
        )


def train_context_fold(
    ctx: RunContext,
    samples: Samples,
    backbone: str,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    fold: int,
    settings: FinetuneSettings,
    *,
    workdir_id: str,
    seed: int,
    digests: Sequence[str] | None = None,
) -> FinetuneFoldResult:
    """:func:`train_fold` with the run's backbone, mask and data, in ``ctx.run_dir(workdir_id)``.

    ``digests`` defaults to the run's data digests (give others for combined sample sets).
    """
    return train_fold(
        samples,
        ctx.backbone(backbone),
        splits,
        fold,
        settings,
        mask=ctx.mask,
        workdir=ctx.run_dir(workdir_id),
        seed=seed,
        progress=ctx.progress,
        positive_index=ctx.data.imageset.positive_index,
        backbone_name=backbone,
        backbone_options=ctx.suite.backbone_options(backbone),
        dataset_fingerprint=ctx.data.fingerprint,
        decoded=ctx.decoded,
        digests=ctx.data.digests if digests is None else digests,
    )


def _bar(enabled: bool) -> contextlib.AbstractContextManager:
    """The training progress bar (``bench.progress``): epoch/step, loss, img/s, ETA."""
    return progress_bar(
        enabled,
        metrics=("loss {task.fields[loss]:.4f}", "{task.fields[ips]:.1f} img/s"),
        eta_label=True,
    )
