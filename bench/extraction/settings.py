"""What an extraction call runs with: batch size, compiling, autocast dtype, GPU decode.

Read from the backbone's :class:`bench.backbone.RuntimeHints` and the
``LEUKOBENCH_*`` switches, so every strategy decides the same way.
"""

from __future__ import annotations

import os

from bench.backbone import Backbone

# Below this, compiling costs more than it saves: EfficientNet-Lite0 in the CPU lanes,
# malloc tuned, ran 264 img/s compiled vs ~210 eager after a ~4 s compile (break-even
# ~4,100 images; docs/PERFORMANCE.md).
COMPILE_MIN_IMAGES = 5000
# Reader threads of the CUDA JPEG pipeline when ``workers`` is not given.
DEFAULT_READERS = 1


def default_batch_size(backbone: Backbone, device: str) -> int:
    """A batch size that keeps the device busy: the plugin's CPU hint, 256 on CUDA."""
    if device.startswith("cuda"):
        return 256
    hint = backbone.hints.cpu_batch_size
    if hint:
        return int(hint)
    return 32 if backbone.input_size <= 256 else 8


def want_compile(backbone: Backbone, device: str, n_images: int) -> bool:
    """Whether to ``torch.compile`` the extractor for this run.

    ``LEUKOBENCH_COMPILE=1``/``0`` forces it; by default (``auto``) only on
    CPU, for backbones whose plugin measured a gain (``hints.cpu_compile``),
    when at least :data:`COMPILE_MIN_IMAGES` images are to be computed.
    """
    mode = os.environ.get("LEUKOBENCH_COMPILE", "auto").strip().lower()
    if mode in ("1", "true", "yes", "on"):
        return True
    if mode in ("0", "false", "no", "off"):
        return False
    return device == "cpu" and bool(backbone.hints.cpu_compile) and n_images >= COMPILE_MIN_IMAGES


def cuda_autocast_dtype(backbone: Backbone) -> str:
    """The autocast dtype for ``backbone`` on CUDA: the plugin's ``cuda_autocast`` (bfloat16)."""
    return backbone.hints.cuda_autocast


def gpu_jpeg_available() -> bool:
    """Whether JPEGs may be decoded on the device (torchvision's decoder; ``LEUKOBENCH_GPU_JPEG=0``
    turns it off)."""
    if os.environ.get("LEUKOBENCH_GPU_JPEG", "1") == "0":
        return False
    try:
        from torchvision.io import decode_jpeg  # noqa: F401
    except ImportError:
        return False
    return True
