"""Feature-cache keys of samples: backbone identity, device numerics, transform, mask, image."""

from __future__ import annotations

from collections.abc import Sequence

from bench.backbone import Backbone
from bench.data.imageset import Samples
from bench.data.mask import Rect, mask_fns
from bench.extraction.settings import cuda_autocast_dtype
from bench.feature_cache import feature_key


def numerics_tag(device: str, backbone: Backbone | None = None) -> str:
    """What the device's arithmetic adds to a feature's identity.

    CPU features (eager float32, PIL decode) keep the plain key. CUDA features
    are computed under autocast (bf16 unless the plugin asks otherwise) from
    nvjpeg-decoded, GPU-resized pixels, and MPS in its own float32 kernels:
    close to the CPU's (docs/PERFORMANCE.md states the tolerance) but not
    bit-identical, so they are cached under their own keys.
    """
    if device.startswith("cuda"):
        dtype = cuda_autocast_dtype(backbone) if backbone is not None else "bfloat16"
        return "cuda-bf16" if dtype == "bfloat16" else f"cuda-{dtype}"
    if device == "mps":
        return "mps-fp32"
    return ""


def sample_keys(
    samples: Samples,
    backbone: Backbone,
    digests: Sequence[str],
    mask: Sequence[Rect] | None = None,
    device: str = "cpu",
    decoder: str = "pil",
) -> list[str]:
    """The feature-cache key of every sample (backbone, numerics, transform, mask, image)."""
    mkey, _ = mask_fns(mask)
    ident = backbone.cache_identity()
    tag = numerics_tag(device, backbone)
    if tag:
        ident = f"{ident}|{tag}"
    elif decoder != "pil":  # CPU pixels from another decoder (on CUDA JPEGs decode on the GPU)
        ident = f"{ident}|decoder={decoder}"
    return [
        feature_key(ident, t.key(), mkey, digests[int(s)])
        for s, t in zip(samples.source, samples.transforms)
    ]
