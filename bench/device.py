"""Choosing the compute device, CPU thread settings and autocast: the one place for each."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from bench.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")


def check_device_name(name: str, key: str) -> None:
    """UserError (naming ``key``) unless ``name`` is auto, cpu, mps, cuda or cuda:N."""
    base, _, index = str(name).lower().partition(":")
    if base not in DEVICES or (index and (base != "cuda" or not index.isdigit())):
        raise UserError(
            f"{key}: unknown device {name!r}; use one of {', '.join(DEVICES)} (or cuda:N)"
        )


def resolve_device(name: str = "auto") -> str:
    """``auto`` -> ``cuda`` > ``mps`` > ``cpu``; an explicit device must exist."""
    import torch

    name = (name or "auto").lower()
    base = name.split(":", 1)[0]
    if base not in DEVICES:
        raise UserError(f"unknown device {name!r}; use one of {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if base == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if base == "cuda" and not cuda:
        raise UserError(
            "device 'cuda' requested but no CUDA GPU is available; use 'auto' "
            "(--set run.device=auto for run, --device auto for extract and audit)"
        )
    if base == "mps" and not mps:
        raise UserError(
            "device 'mps' requested but MPS is not available; use 'auto' "
            "(--set run.device=auto for run, --device auto for extract and audit)"
        )
    return name


def cpu_threads() -> int:
    """Cores this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def torch_device(name: str = "auto") -> Any:
    """:func:`resolve_device` as a ``torch.device``; a name torch cannot parse is a UserError."""
    import torch

    resolved = resolve_device(name)
    try:
        return torch.device(resolved)
    except RuntimeError as exc:
        raise UserError(f"device {name!r} is not a torch device") from exc


# autocast dtype names, with the fine-tuning setting's short forms
AUTOCAST_DTYPES = {
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "float32": "float32",
}


def autocast(
    device: Any, dtype: str | None, *, cache_enabled: bool | None = None
) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on a CUDA ``device``; elsewhere, or for ``dtype``
    ``None``/``"none"``, a no-op. ``dtype`` is a name of :data:`AUTOCAST_DTYPES`.

    Extraction passes the backbone's ``RuntimeHints.cuda_autocast``, fine-tuning its
    ``amp`` setting; ``cache_enabled=None`` keeps torch's own default.
    """
    kind = getattr(device, "type", None) or str(device).split(":", 1)[0]
    if kind != "cuda" or dtype is None or dtype == "none":
        return contextlib.nullcontext()
    import torch

    name = AUTOCAST_DTYPES.get(dtype)
    if name is None:
        raise UserError(f"unknown autocast dtype {dtype!r} (use {', '.join(AUTOCAST_DTYPES)})")
    return torch.autocast("cuda", dtype=getattr(torch, name), cache_enabled=cache_enabled)
