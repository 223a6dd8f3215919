"""Model 2's training machinery: seeds, signals, determinism, optimiser, modes, autocast."""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import threading
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from bench.backbone import Backbone
from bench.device import resolve_device
from bench.errors import UserError
from bench.protocols.finetune.settings import FinetuneSettings


# -- seeds, devices, signals ---------------------------------------------------------
def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (stable across processes and platforms)."""
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
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
def deterministic(device: torch.device) -> Iterator[None]:
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


def torch_device(name: str) -> torch.device:
    """The ``device`` setting resolved by :func:`bench.device.resolve_device`."""
    try:
        return torch.device(resolve_device(name))
    except UserError as exc:
        raise UserError(f"finetune: setting 'device': {exc}") from None
    except RuntimeError as exc:
        raise UserError(f"finetune: setting 'device' = {name!r} is not a torch device") from exc


# -- model, optimiser --------------------------------------------------------------------
def head_of(model: nn.Module, backbone: Backbone) -> nn.Module | None:
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


def set_train_mode(model: nn.Module, head: nn.Module | None, settings: FinetuneSettings) -> None:
    if settings.train == "head" and head is not None:
        model.eval()  # frozen body: BatchNorm statistics and dropout stay as trained
        head.train()
    else:
        model.train()


def autocast(
    device: torch.device, amp: str, cache_enabled: bool = True
) -> contextlib.AbstractContextManager:
    if device.type != "cuda" or amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype, cache_enabled=cache_enabled)
