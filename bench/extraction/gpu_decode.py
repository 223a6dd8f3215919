"""JPEG bytes decoded on the device (nvjpeg on CUDA), resized there, placed into a batch.

Used by the general device loop and the CUDA JPEG pipeline; on the CPU the same
functions run with torchvision's CPU decoder (the tests do that).
"""

from __future__ import annotations

from typing import Any


def resize_uint8(images: Any, size: int, interpolation: str) -> Any:
    """A uint8 ``(N, 3, H, W)`` tensor resized to ``size`` x ``size`` on its own device.

    Float interpolation (antialiased when shrinking), rounded back to uint8 as
    PIL does; pixels may differ from PIL's fixed-point resize by one level.
    """
    import torch
    import torch.nn.functional as F

    if tuple(images.shape[-2:]) == (size, size):
        return images
    mode = interpolation if interpolation in ("bilinear", "bicubic", "nearest") else "bilinear"
    kwargs: dict[str, Any] = {}
    if mode != "nearest":
        kwargs = {"antialias": True, "align_corners": False}
    out = F.interpolate(images.float(), size=(size, size), mode=mode, **kwargs)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def put_rows(x: Any, positions: list[int], values: Any) -> None:
    """``x[positions] = values`` without a synchronising host-to-device index copy."""
    import torch

    if positions == list(range(positions[0], positions[0] + len(positions))):
        x[positions[0] : positions[0] + len(positions)] = values
        return
    idx = torch.tensor(positions, dtype=torch.long)
    if x.is_cuda:
        idx = idx.pin_memory().to(x.device, non_blocking=True)
    x.index_copy_(0, idx, values)


def decode_jpegs(encoded: list[tuple[int, Any]], device: Any) -> list[Any]:
    """One batched decode of the JPEG byte tensors on ``device`` (nvjpeg on CUDA)."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    tensors = [e for _, e in encoded]
    if device.type == "cuda":  # the op itself: no per-call checks and warnings in Python
        op = getattr(torch.ops.image, "decode_jpegs_cuda", None)
        if op is not None:
            return op(tensors, ImageReadMode.RGB.value, device)
    return decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)


def place(
    x: Any, encoded: list[tuple[int, Any]], images: list[Any], size: int, interpolation: str
) -> None:
    """Decoded images resized into their positions of ``x`` (one resize per shape)."""
    import torch

    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape[-2:]), []).append(i)
    for members in groups.values():
        stack = torch.stack([images[i] for i in members])
        resized = resize_uint8(stack, size, interpolation)
        put_rows(x, [encoded[i][0] for i in members], resized)


def decode_into(x: Any, encoded: list[tuple[int, Any]], size: int, interpolation: str) -> None:
    """Decode JPEGs on ``x``'s device (nvjpeg on CUDA, one batched call), resize, fill ``x``."""
    place(x, encoded, decode_jpegs(encoded, x.device), size, interpolation)


def decode_stack(encoded: list[tuple[int, Any]], device: str, size: int, interpolation: str) -> Any:
    """A batch of JPEGs only, at positions 0..n-1: decoded, resized, as one uint8 tensor."""
    import torch

    images = decode_jpegs(encoded, torch.device(device))
    shape = images[0].shape
    if all(img.shape == shape for img in images):  # the usual case: no copy into place
        stack = torch.stack(images)
        return resize_uint8(stack, size, interpolation)
    x = torch.empty((len(images), 3, size, size), dtype=torch.uint8, device=images[0].device)
    place(x, encoded, images, size, interpolation)
    return x
