"""Shared helpers for backbones built on timm architectures.

Not a plugin (no entry point): the ``timm`` and ``efficientnet_lite`` plugins
both use it, so neither plugin imports the other.
"""

from __future__ import annotations

from typing import Any

from bench.backbone import Backbone, RuntimeHints
from bench.errors import UserError
from bench.weights import seeded


def check_prelogits_layer(name: str, layer: str | None) -> None:
    """timm backbones give pre-logits features only; anything else is a UserError."""
    if layer not in (None, "", "pre-logits"):
        raise UserError(f"backbone {name!r}: only layer 'pre-logits' is supported, got {layer!r}")


def weights_label(kind: str, path: Any) -> str:
    """How a record names the weights: ``imagenet`` or the local file's path."""
    return "imagenet" if kind == "imagenet" else str(path)


def backbone_from_timm(
    name: str,
    arch: str,
    *,
    weights_label: str,
    weights_digest: str,
    pretrained: bool,
    load: Any,
    seed: int,
    pretrained_cfg: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    hints: RuntimeHints | None = None,
) -> Backbone:
    """Wrap a timm architecture as a Backbone.

    ``load(model)`` puts the chosen weights into a freshly created 1,000-class
    (or default-head) model; ``None`` keeps the seeded random init. ``hints``
    are the plugin's measured speed settings (default: none).
    """
    import timm

    def build(num_classes: int | None) -> Any:
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        with seeded(seed):
            model = timm.create_model(arch, pretrained=False, **kwargs)
        return model

    def full() -> Any:
        model = build(None)
        if load is not None:
            load(model)
        return model

    model = full()
    cfg = dict(pretrained_cfg or model.pretrained_cfg)
    head = cfg.get("classifier") or "classifier"
    if isinstance(head, (list, tuple)):
        head = head[0]
    model.reset_classifier(0)
    model.eval()
    size = int(cfg.get("input_size", (3, 224, 224))[-1])

    def make_finetune(num_classes: int) -> Any:
        """Fresh trainable copy with a new ``num_classes`` head at ``head_module``."""
        net = full()
        with seeded(seed + 1):
            net.reset_classifier(int(num_classes))
        return net.train()

    return Backbone(
        name=name,
        input_size=size,
        feature_dim=int(model.num_features),
        extractor=model,
        make_finetune=make_finetune,
        weights=weights_label,
        weights_digest=weights_digest,
        pretrained=pretrained,
        mean=tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),
        interpolation=str(cfg.get("interpolation", "bilinear")),
        layer="pre-logits",
        head_module=head,
        extra={
            "architecture": f"timm.{arch}",
            **({"crop_pct_not_applied": cfg["crop_pct"]} if cfg.get("crop_pct") else {}),
            **(extra or {}),
        },
        hints=hints or RuntimeHints(),
    )
