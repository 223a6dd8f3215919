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
    torch_hub_checkpoints,
)
from plugins.timm_support import backbone_from_timm, check_prelogits_layer, weights_label

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
    check_prelogits_layer(name, layer)
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
        weights_label=weights_label(choice.kind, path),
        weights_digest=file_sha256(path),
        pretrained=True,
        load=load,
        seed=seed,
        pretrained_cfg=cfg,
        extra={"weights_file": str(path), "arch": arch},
    )


def validate_options(options: dict[str, Any]) -> None:
    """Model name (timm's registry, no weights), layer and weights options."""
    name = f"{FAMILY}/{options.get('model_name')}"
    check_model_name(str(options.get("model_name")))
    check_prelogits_layer(name, options.get("layer"))
    parse_weights(options.get("weights", "imagenet"), name)


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
            validate=validate_options,
        )
    ]
