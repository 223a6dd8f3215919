"""Choosing the compute device and CPU thread settings."""

from __future__ import annotations

import os

from bench.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")


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
        raise UserError("device 'cuda' requested but no CUDA GPU is available (use --device auto)")
    if base == "mps" and not mps:
        raise UserError("device 'mps' requested but MPS is not available (use --device auto)")
    return name


def cpu_threads() -> int:
    """Cores this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
