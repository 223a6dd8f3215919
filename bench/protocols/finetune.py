"""Model 2: fine-tune a backbone with a new k-class head, per split, resumably.

The paper's settings are the defaults (:class:`FinetuneSettings`). Each fold
trains in ``workdir/fold-NN/``: a training state is written atomically after
every completed epoch, so a killed run started again with the same inputs
resumes from the last completed epoch and ends bit-identical (on CPU) to an
uninterrupted run; a finished fold is not trained again. Best and last models
are saved as safetensors files (:mod:`bench.checkpoint`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.backbone import Backbone
from bench.checkpoint import (
    SCHEMA,
    atomic_write_json,
    load_model_file,
    load_training_state,
    save_model_file,
    save_training_state,
)
from bench.data.imageset import Samples, Transform
from bench.data.mask import mask_fns
from bench.device import autocast, resolve_device
from bench.errors import BadImagesError, UserError
from bench.extraction import DecodedImages, Normaliser
from bench.malloc_tuning import tuned_malloc
from bench.progress import progress_bar
from bench.protocols.graph_step import GraphedStep, graph_unsupported
from bench.registry import suggest

OPTIMIZERS = ("sgdm", "sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine")
TRAIN_MODES = ("all", "head")
AUGMENTATIONS = ("premade", "onthefly")
AMP_MODES = ("none", "bf16", "fp16")


@dataclass(frozen=True)
class FinetuneSettings:
    """Fine-tuning settings; the defaults are the paper's (MATLAB ``trainingOptions('sgdm')``).

    ``weight_decay`` 1e-4 is MATLAB's default ``L2Regularization``. ``train="head"``
    freezes everything but the new head; ``head_lr_factor`` multiplies the head's
    learning rate (MATLAB's ``WeightLearnRateFactor``). ``patience > 0`` turns on
    early stopping on a validation split of ``val_fraction`` of the *training*
    groups (never the test side). ``drop_last`` discards the last partial
    mini-batch of an epoch, as MATLAB does. ``amp`` and ``cuda_graph`` (the whole step captured once as a CUDA graph,
    :mod:`bench.protocols.graph_step`) apply on CUDA only.
    """

    batch_size: int = 5
    epochs: int = 6
    lr: float = 1e-4
    optimizer: str = "sgdm"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "none"
    label_smoothing: float = 0.0
    train: str = "all"
    head_lr_factor: float = 1.0
    patience: int = 0
    val_fraction: float = 0.0
    augmentation: str = "premade"
    aug_scheme: str = "loey2020"
    amp: str = "none"
    channels_last: bool = False
    cuda_graph: bool = False
    device: str = "auto"
    drop_last: bool = True
    eval_batch_size: int = 64

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> FinetuneSettings:
        """Settings from a suite table; unknown keys and bad values raise :class:`UserError`."""
        options = dict(options or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        bad = [k for k in options if k not in fields]
        if bad:
            msgs = [f"{k!r}{suggest(k, fields)}" for k in sorted(bad)]
            raise UserError(
                f"finetune: unknown setting(s) {', '.join(msgs)} (known: {', '.join(fields)})"
            )
        values: dict[str, Any] = {}
        for name, value in options.items():
            kind = type(getattr(cls, name))
            try:
                if kind is bool:
                    if not isinstance(value, bool):
                        raise ValueError("expected true or false")
                    values[name] = value
                elif kind is int:
                    if isinstance(value, bool) or float(value) != int(value):
                        raise ValueError("expected an integer")
                    values[name] = int(value)
                elif kind is float:
                    if isinstance(value, bool):
                        raise ValueError("expected a number")
                    values[name] = float(value)
                else:
                    values[name] = str(value).lower()
            except (TypeError, ValueError) as exc:
                raise UserError(f"finetune: setting {name!r} = {value!r}: {exc}") from exc
        if values.get("patience", 0) > 0 and "val_fraction" not in values:
            values["val_fraction"] = 0.1
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise :class:`UserError` naming the first bad setting."""
        choices = {
            "optimizer": OPTIMIZERS,
            "schedule": SCHEDULES,
            "train": TRAIN_MODES,
            "augmentation": AUGMENTATIONS,
            "amp": AMP_MODES,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise UserError(
                    f"finetune: setting {name!r} = {value!r}{suggest(value, allowed)} "
                    f"(choose from {', '.join(allowed)})"
                )
        for name in ("batch_size", "epochs", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"finetune: setting {name!r} must be >= 1")
        if self.lr <= 0 or self.head_lr_factor <= 0:
            raise UserError("finetune: settings 'lr' and 'head_lr_factor' must be > 0")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise UserError("finetune: 'weight_decay' must be >= 0 and 'momentum' in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise UserError("finetune: 'label_smoothing' must be in [0, 1)")
        if self.patience < 0 or not 0 <= self.val_fraction < 1:
            raise UserError("finetune: 'patience' must be >= 0 and 'val_fraction' in [0, 1)")
        if self.patience > 0 and self.val_fraction == 0:
            raise UserError("finetune: early stopping ('patience' > 0) needs 'val_fraction' > 0")
        why = graph_unsupported(self.optimizer, self.schedule, self.amp)
        if self.cuda_graph and why:
            raise UserError(f"finetune: 'cuda_graph = true' cannot capture {why}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class FinetuneFoldResult:
    """What one fold produced: test predictions, training curve, timings, model files."""

    fold: int
    test_index: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    score: np.ndarray  # binary: positive-class probability (N,); multi-class: (N, k)
    history: list[dict[str, Any]]  # per iteration: epoch, iteration, loss, accuracy, lr
    val_history: list[dict[str, Any]]  # per epoch: epoch, val_loss, val_accuracy
    train_s: float
    images_per_s: float
    best_path: Path
    last_path: Path
    selected: str  # "best" (validation) or "last"
    epochs_run: int
    metrics: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False
    device: str = "cpu"

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("test_index", "y_true", "y_pred", "score"):
            d[k] = np.asarray(d[k]).tolist()
        d["best_path"], d["last_path"] = str(self.best_path), str(self.last_path)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FinetuneFoldResult:
        d = dict(d)
        d["test_index"] = np.asarray(d["test_index"], dtype=np.int64)
        d["y_true"] = np.asarray(d["y_true"], dtype=np.int64)
        d["y_pred"] = np.asarray(d["y_pred"], dtype=np.int64)
        d["score"] = np.asarray(d["score"], dtype=np.float64)
        d["best_path"], d["last_path"] = Path(d["best_path"]), Path(d["last_path"])
        return cls(**d)


# -- seeds, devices, signals ---------------------------------------------------------
def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (stable across processes and platforms)."""
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt (main thread only), so kills end cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic algorithms on CPU (cheap there); left alone on accelerators."""
    if device.type != "cpu":
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    warn_before = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_before)


def _torch_device(name: str) -> torch.device:
    """The ``device`` setting resolved by :func:`bench.device.resolve_device`."""
    try:
        return torch.device(resolve_device(name))
    except UserError as exc:
        raise UserError(f"finetune: setting 'device': {exc}") from None
    except RuntimeError as exc:
        raise UserError(f"finetune: setting 'device' = {name!r} is not a torch device") from exc


# -- images in memory ------------------------------------------------------------------
class ImageBank:
    """Every needed source image decoded once (uint8 HWC), masked, then transformed per sample.

    With ``decoded`` and ``digests`` (content digest per image of the image set),
    decodes go through that in-run memo (:class:`bench.extraction.DecodedImages`),
    shared with feature extraction and other fine-tuning cells of the same view.
    """

    def __init__(
        self,
        samples: Samples,
        sources: np.ndarray,
        size: int,
        interpolation: str,
        mean: Sequence[float],
        std: Sequence[float],
        mask: Any = None,
        *,
        decoded: DecodedImages | None = None,
        digests: Sequence[str] | None = None,
    ) -> None:
        from bench.data import decode

        self.samples = samples
        self.size = size
        self.images: dict[int, np.ndarray] = {}
        memo = decoded if digests is not None else None
        mkey, mask_fn = mask_fns(mask)
        view = (size, interpolation, mkey)
        problems: list[tuple[str, str]] = []
        for src in sorted({int(s) for s in sources}):
            img = memo.get(view, digests[src]) if memo is not None else None
            if img is None:
                path = samples.imageset.paths[src]
                try:
                    img = decode.decode_resized(path, size, interpolation)
                except Exception as exc:  # noqa: BLE001 - Pillow raises many types
                    problems.append((str(path), f"{type(exc).__name__}: {exc}"))
                    continue
                if mask_fn is not None:
                    img = mask_fn(img)
                img = np.ascontiguousarray(img)
                if memo is not None:
                    memo.put(view, digests[src], img)
            self.images[src] = img
        if problems:
            raise BadImagesError(problems, hint="fix or remove them (or run with --skip-bad)")
        self.normaliser = Normaliser(mean, std)

    def image(self, i: int, transform: Transform | None = None) -> np.ndarray:
        """Sample ``i`` as uint8 HWC (``transform`` replaces the sample's own when given)."""
        img = self.images[int(self.samples.source[i])]
        t = self.samples.transforms[i] if transform is None else transform
        if t.kind != "identity":
            from bench.data.augment import apply_transform

            img = apply_transform(img, t)
        return img

    def batch(
        self, indices: Sequence[int], transforms: Sequence[Transform] | None = None
    ) -> torch.Tensor:
        """A normalised float batch ``(N, 3, S, S)`` for sample ``indices``."""
        imgs = [
            self.image(i, None if transforms is None else transforms[j])
            for j, i in enumerate(indices)
        ]
        return self.normaliser.training(np.stack(imgs))


# -- validation carve ----------------------------------------------------------------
def carve_validation(
    train_idx: np.ndarray, groups: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``train_idx`` into (fit, val) by whole groups, ~``fraction`` of samples to val.

    Groups are taken per class (by each group's majority label) in a seeded
    order, so both classes appear in the validation side when they can.
    """
    train_idx = np.asarray(train_idx, dtype=np.int64)
    if fraction <= 0:
        return train_idx, np.empty(0, dtype=np.int64)
    g = groups[train_idx]
    uniq, inverse = np.unique(g.astype(str), return_inverse=True)
    sizes = np.bincount(inverse)
    glabel = np.array(
        [np.bincount(labels[train_idx][inverse == k]).argmax() for k in range(len(uniq))]
    )
    rng = np.random.default_rng(seed)
    val_groups: list[int] = []
    for c in np.unique(glabel):
        members = np.flatnonzero(glabel == c)
        members = members[rng.permutation(len(members))]
        target = fraction * sizes[members].sum()
        taken = 0
        for k in members[:-1]:  # always leave the class one group for fitting
            if taken >= target:
                break
            val_groups.append(int(k))
            taken += sizes[k]
    in_val = np.isin(inverse, val_groups)
    return train_idx[~in_val], train_idx[in_val]


# -- model, optimiser --------------------------------------------------------------------
def _head(model: nn.Module, backbone: Backbone) -> nn.Module | None:
    return model.get_submodule(backbone.head_module) if backbone.head_module else None


def build_optimizer(
    model: nn.Module, head: nn.Module | None, settings: FinetuneSettings, device: torch.device
) -> torch.optim.Optimizer:
    """The optimiser over trainable parameters, the head in its own group (lr x factor)."""
    if head is None and (settings.train == "head" or settings.head_lr_factor != 1.0):
        raise UserError(
            "finetune: this backbone does not name its head (Backbone.head_module), so "
            "'train = \"head\"' and 'head_lr_factor' are unavailable"
        )
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    if settings.train == "head":
        for p in model.parameters():
            p.requires_grad_(id(p) in head_ids)
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    heads = [p for p in model.parameters() if p.requires_grad and id(p) in head_ids]
    groups = []
    if body:
        groups.append({"params": body, "lr": settings.lr})
    if heads:
        groups.append({"params": heads, "lr": settings.lr * settings.head_lr_factor})
    extra: dict[str, Any] = {"fused": True} if device.type == "cuda" else {}
    if settings.optimizer in ("sgdm", "sgd"):
        momentum = settings.momentum if settings.optimizer == "sgdm" else 0.0
        return torch.optim.SGD(
            groups, lr=settings.lr, momentum=momentum, weight_decay=settings.weight_decay, **extra
        )
    cls = torch.optim.Adam if settings.optimizer == "adam" else torch.optim.AdamW
    return cls(groups, lr=settings.lr, weight_decay=settings.weight_decay, **extra)


def _set_mode(model: nn.Module, head: nn.Module | None, settings: FinetuneSettings) -> None:
    if settings.train == "head" and head is not None:
        model.eval()  # frozen body: BatchNorm statistics and dropout stay as trained
        head.train()
    else:
        model.train()


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
    decoded: DecodedImages | None = None,
    digests: Sequence[str] | None = None,
) -> list[FinetuneFoldResult]:
    """Fine-tune on each ``(train_idx, test_idx)`` split of ``samples``; resumable in ``workdir``.

    ``backbone_name``/``backbone_options`` are what the registry needs to rebuild
    the architecture at predict time (defaults: ``backbone.name`` and ``{}``).
    ``mask`` (rectangles for :func:`bench.data.mask.apply_mask`) is applied to
    every decoded source image, training and test. With ``decoded`` (the run's
    :class:`bench.extraction.DecodedImages`) and ``digests`` (content digest of each
    image of ``samples.imageset``), decoded images are shared through that memo.
    Returns one result per split.
    """
    settings.validate()
    backbone = backbone_factory if isinstance(backbone_factory, Backbone) else backbone_factory()
    device = _torch_device(settings.device)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    imageset = samples.imageset
    if digests is not None and len(digests) != len(imageset):
        raise ValueError(f"{len(digests)} digests for {len(imageset)} images")
    if positive_index is None:
        positive_index = imageset.positive_index
    needed = np.unique(
        np.concatenate([np.asarray(s, dtype=np.int64) for tr_te in splits for s in tr_te])
    )
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
    context = _FoldContext(
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
    results = []
    heap = tuned_malloc() if device.type == "cpu" else contextlib.nullcontext()
    with heap, _sigterm_as_interrupt(), _deterministic(device), _bar(progress) as bar:
        for fold, (train_idx, test_idx) in enumerate(splits):
            key_src = {
                **common,
                "fold": fold,
                "train": _index_digest(train_idx),
                "test": _index_digest(test_idx),
            }
            key = hashlib.sha256(
                json.dumps(key_src, sort_keys=True, default=str).encode()
            ).hexdigest()
            fold_dir = workdir / f"fold-{fold:02d}"
            results.append(
                context.run_fold(
                    fold,
                    len(splits),
                    np.asarray(train_idx),
                    np.asarray(test_idx),
                    fold_dir,
                    key,
                    bar,
                )
            )
    return results


def _bar(enabled: bool) -> contextlib.AbstractContextManager:
    """The training progress bar (``bench.progress``): epoch/step, loss, img/s, ETA."""
    return progress_bar(
        enabled,
        metrics=("loss {task.fields[loss]:.4f}", "{task.fields[ips]:.1f} img/s"),
        eta_label=True,
    )


@dataclass
class _FoldContext:
    samples: Samples
    backbone: Backbone
    settings: FinetuneSettings
    device: torch.device
    bank: ImageBank
    seed: int
    positive_index: int | None
    meta_base: dict[str, Any]

    # -- evaluation --------------------------------------------------------------------
    def _predict(self, model: nn.Module, idx: np.ndarray) -> tuple[np.ndarray, float]:
        """Softmax probabilities (N, k) for sample ``idx`` and the mean CE loss."""
        model.eval()
        labels = self.samples.labels
        probs, loss_sum = [], 0.0
        bs = self.settings.eval_batch_size
        with torch.no_grad():
            for start in range(0, len(idx), bs):
                chunk = idx[start : start + bs]
                x = self._to_device(self.bank.batch(chunk))
                with autocast(self.device, self.settings.amp):
                    logits = model(x)
                logits = logits.float().cpu()
                y = torch.from_numpy(labels[chunk])
                loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
                probs.append(torch.softmax(logits, dim=1).numpy())
        p = np.concatenate(probs) if probs else np.empty((0, self.meta_base["num_classes"]))
        return p.astype(np.float64), loss_sum / max(len(idx), 1)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        if self.settings.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x.to(self.device, non_blocking=True)

    def _show(
        self,
        bar: Any,
        task: Any,
        pending: list,
        t0: float,
        epoch: int,
        steps: int,
        step: int,
        fold: int,
        n_folds: int,
        loss: torch.Tensor,
    ) -> None:
        """Progress every 20 steps (reading the loss waits for the GPU, so not every step)."""
        if task is None or not (step % 20 == 19 or step == steps - 1):
            return
        elapsed = time.perf_counter() - t0
        done = sum(p[0] for p in pending)
        bar.update(
            task,
            completed=epoch * steps + step + 1,
            description=f"fold {fold + 1}/{n_folds} epoch {epoch + 1}/{self.settings.epochs}",
            loss=float(loss.detach()),
            ips=done / max(elapsed, 1e-9),
        )

    # -- one fold -------------------------------------------------------------------------------
    def run_fold(
        self,
        fold: int,
        n_folds: int,
        train_idx: np.ndarray,
        test_idx: np.ndarray,
        fold_dir: Path,
        key: str,
        bar: Any,
    ) -> FinetuneFoldResult:
        s = self.settings
        result_path = fold_dir / "result.json"
        if result_path.is_file():
            try:
                saved = json.loads(result_path.read_text())
            except (OSError, json.JSONDecodeError):
                saved = {}
            if saved.get("key") == key:
                res = FinetuneFoldResult.from_json(saved["result"])
                res.resumed = True
                return res
        fold_dir.mkdir(parents=True, exist_ok=True)
        best_path, last_path = fold_dir / "best.safetensors", fold_dir / "last.safetensors"
        state_path = fold_dir / "state.pt"
        labels = self.samples.labels
        fit_idx, val_idx = carve_validation(
            train_idx,
            self.samples.groups,
            labels,
            s.val_fraction,
            derive_seed(self.seed, fold, "val"),
        )
        if len(fit_idx) == 0:
            raise UserError(f"finetune: fold {fold} has no training samples")

        torch.manual_seed(derive_seed(self.seed, fold, "init"))
        model = self.backbone.make_finetune(self.meta_base["num_classes"])
        head = _head(model, self.backbone)
        model.to(self.device)
        if s.channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, head, s, self.device)
        n_fit = len(fit_idx)
        drop_last = s.drop_last and n_fit >= s.batch_size
        steps = n_fit // s.batch_size if drop_last else math.ceil(n_fit / s.batch_size)
        total_steps = steps * s.epochs
        scheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
            if s.schedule == "cosine"
            else None
        )
        scaler = (
            torch.amp.GradScaler("cuda") if self.device.type == "cuda" and s.amp == "fp16" else None
        )
        criterion = nn.CrossEntropyLoss(label_smoothing=s.label_smoothing)

        st: dict[str, Any] = {
            "epoch": 0,
            "history": [],
            "val_history": [],
            "best_val": None,
            "best_epoch": 0,
            "bad_epochs": 0,
            "stopped": False,
            "train_s": 0.0,
            "images": 0,
        }
        resumed = False
        if state_path.is_file():
            saved_state = load_training_state(state_path)
            if saved_state.get("key") == key:
                model.load_state_dict(saved_state["model"])
                optimizer.load_state_dict(saved_state["optimizer"])
                if scheduler is not None:
                    scheduler.load_state_dict(saved_state["scheduler"])
                if scaler is not None and "scaler" in saved_state:
                    scaler.load_state_dict(saved_state["scaler"])
                st = {k: saved_state[k] for k in st}
                st["history"], st["val_history"] = list(st["history"]), list(st["val_history"])
                resumed = True
        task = None
        if bar is not None:
            task = bar.add_task(
                f"fold {fold + 1}/{n_folds}", total=total_steps, loss=float("nan"), ips=0.0
            )
            bar.update(task, completed=st["epoch"] * steps)

        use_graph = s.cuda_graph and self.device.type == "cuda"
        graphed: GraphedStep | None = None
        while st["epoch"] < s.epochs and not st["stopped"]:
            epoch = st["epoch"]
            torch.manual_seed(derive_seed(self.seed, fold, "epoch", epoch))
            gen = torch.Generator().manual_seed(derive_seed(self.seed, fold, "shuffle", epoch))
            order = fit_idx[torch.randperm(n_fit, generator=gen).numpy()]
            transforms = None
            if s.augmentation == "onthefly":
                from bench.data.augment import random_transform

                rng = np.random.default_rng(derive_seed(self.seed, fold, "augment", epoch))
                transforms = [random_transform(rng, scheme=s.aug_scheme) for _ in order]
            _set_mode(model, head, s)
            t0 = time.perf_counter()
            pending: list[tuple[int, torch.Tensor, torch.Tensor, float]] = []
            for step in range(steps):
                sl = slice(step * s.batch_size, (step + 1) * s.batch_size)
                batch_idx = order[sl]
                x = self._to_device(
                    self.bank.batch(batch_idx, None if transforms is None else transforms[sl])
                )
                y = torch.from_numpy(labels[batch_idx]).to(self.device, non_blocking=True)
                lr = optimizer.param_groups[-1]["lr"]
                if use_graph and len(batch_idx) == s.batch_size:
                    if graphed is None:
                        graphed = GraphedStep(
                            model,
                            criterion,
                            optimizer,
                            x,
                            y,
                            lambda: autocast(self.device, s.amp, cache_enabled=False),
                        )
                    logits, loss = graphed(x, y)
                    logits, loss = logits.detach().clone(), loss.detach().clone()
                    pending.append((len(batch_idx), loss, (logits.argmax(1) == y).sum(), lr))
                    self._show(bar, task, pending, t0, epoch, steps, step, fold, n_folds, loss)
                    continue
                with autocast(self.device, s.amp):
                    logits = model(x)
                    loss = criterion(logits.float(), y)
                # a captured step owns the .grad tensors: zero them in place, never drop them
                optimizer.zero_grad(set_to_none=graphed is None)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                correct = (logits.detach().argmax(1) == y).sum()
                pending.append((len(batch_idx), loss.detach(), correct, lr))
                self._show(bar, task, pending, t0, epoch, steps, step, fold, n_folds, loss)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            epoch_s = time.perf_counter() - t0
            for n, loss_t, correct_t, lr in pending:
                st["history"].append(
                    {
                        "epoch": epoch + 1,
                        "iteration": len(st["history"]) + 1,
                        "loss": float(loss_t),
                        "accuracy": float(correct_t) / n,
                        "lr": lr,
                    }
                )
            st["train_s"] += epoch_s
            st["images"] += sum(p[0] for p in pending)
            if len(val_idx):
                probs, val_loss = self._predict(model, val_idx)
                val_acc = float((probs.argmax(1) == labels[val_idx]).mean())
                st["val_history"].append(
                    {"epoch": epoch + 1, "val_loss": val_loss, "val_accuracy": val_acc}
                )
                if st["best_val"] is None or val_loss < st["best_val"]:
                    st["best_val"], st["best_epoch"], st["bad_epochs"] = val_loss, epoch + 1, 0
                    self._save(best_path, model, fold, epoch + 1, "best", {}, st)
                else:
                    st["bad_epochs"] += 1
                    if s.patience and st["bad_epochs"] >= s.patience:
                        st["stopped"] = True
            st["epoch"] = epoch + 1
            state = {
                "schema": SCHEMA,
                "key": key,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                **({"scheduler": scheduler.state_dict()} if scheduler is not None else {}),
                **({"scaler": scaler.state_dict()} if scaler is not None else {}),
                **st,
            }
            save_training_state(state_path, state)
        if task is not None:
            bar.update(task, completed=total_steps)

        # -- evaluate on the test side ----------------------------------------------
        self._save(last_path, model, fold, st["epoch"], "last", {}, st)
        selected = "last"
        if len(val_idx) and best_path.is_file():
            tensors, _ = load_model_file(best_path)
            model.load_state_dict(tensors)
            selected = "best"
        else:
            best_path = last_path
        probs, _ = self._predict(model, test_idx)
        y_true = labels[test_idx].astype(np.int64)
        y_pred = probs.argmax(1).astype(np.int64) if len(probs) else np.empty(0, np.int64)
        k = self.meta_base["num_classes"]
        if k == 2:
            pos = 1 if self.positive_index is None else self.positive_index
            score = probs[:, pos] if len(probs) else np.empty(0)
        else:
            score = probs
        metrics = _metrics(y_true, y_pred, score, k, self.positive_index)
        final_epoch = st["best_epoch"] if selected == "best" else st["epoch"]
        self._save(best_path, model, fold, final_epoch, selected, metrics, st)
        result = FinetuneFoldResult(
            fold=fold,
            test_index=np.asarray(test_idx, dtype=np.int64),
            y_true=y_true,
            y_pred=y_pred,
            score=np.asarray(score, dtype=np.float64),
            history=st["history"],
            val_history=st["val_history"],
            train_s=st["train_s"],
            images_per_s=st["images"] / max(st["train_s"], 1e-9),
            best_path=best_path,
            last_path=last_path,
            selected=selected,
            epochs_run=st["epoch"],
            metrics=metrics,
            resumed=resumed,
            device=str(self.device),
        )
        atomic_write_json(result_path, {"key": key, "result": result.to_json()})
        state_path.unlink(missing_ok=True)
        return result

    def _save(
        self,
        path: Path,
        model: nn.Module,
        fold: int,
        epoch: int,
        which: str,
        metrics: dict[str, Any],
        st: dict[str, Any],
    ) -> None:
        meta = {
            **self.meta_base,
            "fold": fold,
            "epoch": epoch,
            "which": which,
            "metrics": metrics,
            "best_val_loss": st.get("best_val"),
        }
        save_model_file(path, model.state_dict(), meta)


def _metrics(
    y_true: np.ndarray, y_pred: np.ndarray, score: np.ndarray, k: int, positive_index: int | None
) -> dict[str, Any]:
    """bench.metrics.compute_metrics when available, else accuracy alone."""
    if len(y_true) == 0:
        return {}
    try:
        from bench.metrics import compute_metrics
    except ImportError:
        return {"accuracy": float((y_true == y_pred).mean())}
    m = compute_metrics(y_true, y_pred, score, n_classes=k, positive_index=positive_index)
    return json.loads(json.dumps(m, default=_plain))


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return str(obj)
