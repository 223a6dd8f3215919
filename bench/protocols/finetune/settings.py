"""Model 2's settings: :class:`FinetuneSettings` (the paper's defaults) and their declarations.

:data:`SETTINGS` declares every key of a finetune table's ``settings`` (type,
default, bounds, choices, description): the suite loader checks them before any
image is read; :meth:`FinetuneSettings.from_options` resolves them for a run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bench.device import check_device_name
from bench.errors import UserError
from bench.protocols.base import Setting, check_table
from bench.registry import suggest

OPTIMIZERS = ("sgdm", "sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine")
TRAIN_MODES = ("all", "head")
AUGMENTATIONS = ("premade", "onthefly")
AMP_MODES = ("none", "bf16", "fp16")


def graph_unsupported(optimizer: str, schedule: str, amp: str) -> str | None:
    """Why these settings cannot use a captured step (``None`` when they can)."""
    if optimizer not in ("sgd", "sgdm"):
        return f"optimizer {optimizer!r} (use sgd or sgdm)"
    if schedule != "none":
        return f"schedule {schedule!r} (the learning rate must stay constant)"
    if amp == "fp16":
        return "amp 'fp16' (loss scaling; use 'bf16' or 'none')"
    return None


@dataclass(frozen=True)
class FinetuneSettings:
    """Fine-tuning settings; the defaults are the paper's (MATLAB ``trainingOptions('sgdm')``).

    ``weight_decay`` 1e-4 is MATLAB's default ``L2Regularization``. ``train="head"``
    freezes everything but the new head; ``head_lr_factor`` multiplies the head's
    learning rate (MATLAB's ``WeightLearnRateFactor``). ``patience > 0`` turns on
    early stopping on a validation split of ``val_fraction`` of the *training*
    groups (never the test side). ``drop_last`` discards the last partial
    mini-batch of an epoch, as MATLAB does. ``amp`` and ``cuda_graph`` (the whole step captured once as a CUDA graph,
    :mod:`bench.protocols.finetune.graph_step`) apply on CUDA only.
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
        for declared in SETTINGS:
            declared.check(getattr(self, declared.name), f"finetune: setting {declared.name!r}")
        choices = {
            "optimizer": OPTIMIZERS,
            "schedule": SCHEDULES,
            "train": TRAIN_MODES,
            "augmentation": AUGMENTATIONS,
            "amp": AMP_MODES,
        }
        check_device_name(self.device, "finetune: setting 'device'")
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


_F = FinetuneSettings
#: Every key of a finetune table's ``settings``, declared (docs/suites.md lists them).
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "batch_size", int, _F.batch_size, "images per training step", minimum=1, maximum=1 << 16
    ),
    Setting("epochs", int, _F.epochs, "passes over the training side", minimum=1, maximum=100_000),
    Setting("lr", float, _F.lr, "learning rate", minimum=0, exclusive_minimum=True, maximum=10),
    Setting(
        "optimizer",
        str,
        _F.optimizer,
        "sgdm (SGD with momentum, MATLAB's default), sgd, adam or adamw",
        choices=OPTIMIZERS,
    ),
    Setting(
        "momentum",
        float,
        _F.momentum,
        "SGD momentum (sgdm only)",
        minimum=0,
        maximum=1,
        exclusive_maximum=True,
    ),
    Setting("weight_decay", float, _F.weight_decay, "L2 regularisation", minimum=0, maximum=1),
    Setting("schedule", str, _F.schedule, "learning-rate schedule", choices=SCHEDULES),
    Setting(
        "label_smoothing",
        float,
        _F.label_smoothing,
        "cross-entropy label smoothing",
        minimum=0,
        maximum=1,
        exclusive_maximum=True,
    ),
    Setting("train", str, _F.train, "all layers, or the new head only", choices=TRAIN_MODES),
    Setting(
        "head_lr_factor",
        float,
        _F.head_lr_factor,
        "the new head's learning-rate multiplier (MATLAB's WeightLearnRateFactor)",
        minimum=0,
        exclusive_minimum=True,
        maximum=1000,
    ),
    Setting(
        "patience",
        int,
        _F.patience,
        "early stopping after this many epochs without a better validation loss (0: off)",
        minimum=0,
    ),
    Setting(
        "val_fraction",
        float,
        _F.val_fraction,
        "fraction of the training groups held out for validation (0.1 when patience > 0)",
        minimum=0,
        maximum=1,
        exclusive_maximum=True,
    ),
    Setting(
        "augmentation",
        str,
        _F.augmentation,
        "premade (the suite's augmented copies) or onthefly (a fresh random transform per step)",
        choices=AUGMENTATIONS,
    ),
    Setting(
        "aug_scheme", str, _F.aug_scheme, "scheme of on-the-fly augmentation", choices=("loey2020",)
    ),
    Setting("amp", str, _F.amp, "mixed precision on CUDA", choices=AMP_MODES),
    Setting("channels_last", bool, _F.channels_last, "channels-last memory format"),
    Setting("cuda_graph", bool, _F.cuda_graph, "capture the training step as a CUDA graph"),
    Setting("device", str, _F.device, "device for training (default: the run's device)"),
    Setting("drop_last", bool, _F.drop_last, "drop the last partial batch of an epoch (MATLAB)"),
    Setting("eval_batch_size", int, _F.eval_batch_size, "images per evaluation batch", minimum=1),
)


def check_model2_settings(table: dict[str, Any], where: str) -> None:
    """Check the ``settings`` of a table whose ``finetune = true`` adds Model 2.

    Settings are fine-tuning settings, so they need ``finetune = true``; string
    values other than ``device`` are compared case-insensitively, and the
    cross-key checks of :class:`FinetuneSettings` apply. Raises :class:`UserError`.
    """
    given = table["settings"]
    if given and not table["finetune"]:
        key = next(iter(given))
        raise UserError(
            f"{where}.settings.{key}: settings are fine-tuning settings; set finetune = true"
        )
    folded = {k: v.lower() if isinstance(v, str) and k != "device" else v for k, v in given.items()}
    check_table(SETTINGS, folded, f"{where}.settings", fill_defaults=False)
    try:
        FinetuneSettings.from_options(given)
    except UserError as exc:
        raise UserError(f"{where}.settings: {exc}") from None
