"""The ``timm`` backbone family: ``timm/<model_name>`` for any name in ``timm.list_models()``.

Features are the pre-logits vector (``num_classes=0``). Input size,
interpolation and normalisation come from the model's ``pretrained_cfg``; its
``crop_pct`` is recorded but not applied (every LeukoBench backbone sees the
whole image resized to its input size, as in the paper, so cells at the border
are never cut off).

Weights: ``imagenet`` = the model's default pretrained weights, found offline
in the Hugging Face cache (``$HF_HUB_CACHE``, default
``~/.cache/huggingface/hub``) or torch hub's checkpoint folder; downloaded only
with ``download=True`` or ``LEUKOBENCH_ALLOW_DOWNLOAD=1``. A local file or
``none`` work as for every backbone.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from bench.backbone import Backbone
from bench.errors import UserError, WeightsNotFoundError
from bench.hookspecs import hookimpl
from bench.specs import BackboneSpec
from bench.weights import (
    download_allowed,
    file_sha256,
    parse_weights,
    random_digest,
    seeded,
    torch_hub_checkpoints,
)

FAMILY = "timm"
_HF_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder (``HF_HUB_CACHE`` > ``HF_HOME/hub`` > default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "huggingface") / "hub"


def expected_weight_paths(cfg: dict[str, Any]) -> list[Path]:
    """Places where timm's default weights for ``cfg`` may lie offline (first = preferred)."""
    paths: list[Path] = []
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        repo = hf_hub_cache() / ("models--" + hub_id.replace("/", "--"))
        snapshots = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)
        for snap in reversed(snapshots):
            paths += [snap / name for name in _HF_FILES]
        if not snapshots:
            paths.append(repo / "snapshots" / "<revision>" / _HF_FILES[0])
    if cfg.get("url"):
        paths.append(torch_hub_checkpoints() / cfg["url"].rsplit("/", 1)[-1])
    return paths


def _find_cached(cfg: dict[str, Any]) -> Path | None:
    return next((p for p in expected_weight_paths(cfg) if p.is_file()), None)


def check_model_name(model_name: str) -> str:
    """``model_name`` if timm knows it (architecture or ``arch.tag``), else UserError."""
    import timm

    if timm.is_model(model_name) or model_name in timm.list_pretrained():
        return model_name
    known = timm.list_models()
    close = difflib.get_close_matches(model_name, known, n=3, cutoff=0.6)
    hint = (
        ("; did you mean " + " or ".join(repr(f"timm/{c}") for c in close) + "?") if close else ""
    )
    raise UserError(
        f'unknown timm model {model_name!r}{hint} (see `python -c "import timm; '
        f"print(timm.list_models('*{model_name[:4]}*'))\"`)"
    )


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
) -> Backbone:
    """Wrap a timm architecture as a Backbone.

    ``load(model)`` puts the chosen weights into a freshly created 1,000-class
    (or default-head) model; ``None`` keeps the seeded random init.
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
    )


def timm_backbone(
    model_name: str,
    weights: str | Path | None = "imagenet",
    layer: str | None = None,
    download: bool | None = False,
    seed: int = 0,
) -> Backbone:
    """``timm/<model_name>``: pre-logits features of any timm model."""
    import timm

    name = f"{FAMILY}/{model_name}"
    check_model_name(model_name)
    if layer not in (None, "", "pre-logits"):
        raise UserError(f"backbone {name!r}: only layer 'pre-logits' is supported, got {layer!r}")
    choice = parse_weights(weights, name)
    probe = timm.create_model(model_name, pretrained=False, num_classes=0)
    cfg = dict(probe.pretrained_cfg)
    del probe
    arch = cfg.get("architecture") or model_name.split(".")[0]
    if choice.kind == "none":
        return backbone_from_timm(
            name,
            model_name,
            weights_label="none",
            weights_digest=random_digest(seed),
            pretrained=False,
            load=None,
            seed=seed,
            pretrained_cfg=cfg,
        )
    path = choice.path
    if choice.kind == "imagenet":
        path = _find_cached(cfg)
        if path is None and download_allowed(download):
            timm.create_model(model_name, pretrained=True)  # fills the cache
            path = _find_cached(cfg)
        if path is None:
            where = "\n  ".join(str(p) for p in expected_weight_paths(cfg)) or "(none known)"
            raise WeightsNotFoundError(
                f"backbone {name!r}: pretrained weights not found offline; timm looks for:\n  "
                f"{where}\nGet them by running once with --allow-download (or "
                "LEUKOBENCH_ALLOW_DOWNLOAD=1) on a machine with internet and copying the cache "
                "folder, or pass weights=PATH to a local state dict"
            )
    assert path is not None
    file_cfg = {**cfg, "file": str(path)}

    def load(model: Any) -> None:
        from timm.models import load_pretrained

        try:
            load_pretrained(model, pretrained_cfg=file_cfg, num_classes=model.num_classes)
        except Exception as exc:  # noqa: BLE001 - a wrong file is the user's to fix
            raise UserError(f"backbone {name!r}: cannot load weights {path}: {exc}") from exc

    return backbone_from_timm(
        name,
        model_name,
        weights_label="imagenet" if choice.kind == "imagenet" else str(path),
        weights_digest=file_sha256(path),
        pretrained=True,
        load=load,
        seed=seed,
        pretrained_cfg=cfg,
        extra={"weights_file": str(path), "arch": arch},
    )


@hookimpl
def leukobench_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(
            name=FAMILY,
            factory=timm_backbone,
            description="any timm model as timm/<model_name>; pre-logits features",
            weight_source="timm pretrained cfg (Hugging Face cache / torch hub cache, offline)",
            licence="per model (see timm pretrained_cfg 'license')",
            family=True,
        )
    ]
