"""The backbone's extractor made ready for a device: eval mode, channels_last, maybe compiled."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from bench.backbone import Backbone
from bench.extraction.settings import want_compile


def prepare_model(backbone: Backbone, device: str) -> Any:
    """The extractor in eval mode, on ``device`` (CUDA, MPS), in channels_last memory order."""
    import torch

    model = backbone.extractor.eval()
    if device.startswith("cuda") or device == "mps":
        model = model.to(device)
    model = model.to(memory_format=torch.channels_last)
    return model


def forward_fn(
    model: Any, backbone: Backbone, device: str, batch_size: int, total: int
) -> tuple[Callable[[Any], Any], bool]:
    """``(forward, compiled)``: the eager model, or a compiled one when
    :func:`bench.extraction.settings.want_compile` says so (fixed batch shape, a short
    batch padded; eager fallback when compiling fails)."""
    if not want_compile(backbone, device, total):
        return model, False
    import torch

    try:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # fold weights/BN into constants (inference only)
        compiled = torch.compile(model, dynamic=False)
    except Exception as exc:  # noqa: BLE001 - compiling is an optimisation only
        warnings.warn(f"torch.compile unavailable ({exc}); running eager", stacklevel=2)
        return model, False
    state = {"ok": None}
    full = batch_size

    def forward(x: Any) -> Any:
        if state["ok"] is False:
            return model(x)
        n = x.shape[0]
        if n < full:  # pad to the compiled shape instead of recompiling
            pad = x.new_zeros((full - n, *x.shape[1:])).contiguous(
                memory_format=torch.channels_last
            )
            x = torch.cat([x, pad]).contiguous(memory_format=torch.channels_last)
        try:
            out = compiled(x)
            state["ok"] = True
        except Exception as exc:  # noqa: BLE001
            if state["ok"]:
                raise
            warnings.warn(f"torch.compile failed ({exc}); running eager", stacklevel=2)
            state["ok"] = False
            out = model(x)
        return out[:n]

    return forward, True
