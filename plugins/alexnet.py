"""The ``alexnet`` backbone: torchvision AlexNet at 227x227, features from a named layer.

Layers (names follow MATLAB's AlexNet, which Loey et al. used):

* ``fc7`` (default, 4,096): output of the second fully connected layer
  *before* ``relu7`` -- what MATLAB's ``activations(net, X, 'fc7')`` returns.
* ``fc7-relu`` (4,096): the same after ReLU.
* ``fc6`` (4,096): first fully connected layer, before ``relu6``.
* ``pool5`` (9,216): flattened output of the last pooling stage.

Weights: ``imagenet`` (torchvision ``AlexNet_Weights.IMAGENET1K_V1`` from
``$TORCH_HOME/hub/checkpoints``; downloaded only with ``download=True`` or
``LEUKOBENCH_ALLOW_DOWNLOAD=1``), a local torchvision-format state dict, or
``none`` (seeded random init, marked not pretrained).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.backbone import IMAGENET_MEAN, IMAGENET_STD, Backbone, RuntimeHints
from bench.errors import UserError, WeightsNotFoundError
from bench.hookspecs import hookimpl
from bench.specs import BackboneSpec
from bench.weights import (
    download_allowed,
    file_sha256,
    load_into,
    load_state_dict_file,
    parse_weights,
    random_digest,
    seeded,
    torch_hub_checkpoints,
)

NAME = "alexnet"
INPUT_SIZE = 227
LAYERS = {"fc7": 4096, "fc7-relu": 4096, "fc6": 4096, "pool5": 9216}
WEIGHTS_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
WEIGHTS_FILE = "alexnet-owt-7be5be79.pth"


def imagenet_weights_path() -> Path:
    """Where torchvision keeps (and looks for) the ImageNet AlexNet weights."""
    return torch_hub_checkpoints() / WEIGHTS_FILE


def _fetch_imagenet(download: bool | None) -> Path:
    path = imagenet_weights_path()
    if path.is_file():
        return path
    if download_allowed(download):
        import torch

        torch.hub.load_state_dict_from_url(WEIGHTS_URL, progress=True, check_hash=True)
        if path.is_file():
            return path
    raise WeightsNotFoundError(
        f"AlexNet ImageNet weights not found at {path} (torchvision's cache, "
        "$TORCH_HOME/hub/checkpoints, TORCH_HOME defaults to ~/.cache/torch). Get them by "
        "running once with --allow-download (or LEUKOBENCH_ALLOW_DOWNLOAD=1) on a machine "
        f"with internet, or download {WEIGHTS_URL} elsewhere and copy it to that path, "
        "or pass weights=PATH to a local state dict"
    )


def _make_extractor(net: Any, layer: str) -> Any:
    import torch
    from torch import nn

    class AlexNetFeatures(nn.Module):
        """AlexNet up to a named layer (dropout is identity in eval mode and left out)."""

        def __init__(self) -> None:
            super().__init__()
            self.features = net.features
            self.avgpool = net.avgpool
            self.fc6 = net.classifier[1]
            self.fc7 = net.classifier[4]
            self.layer = layer

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.flatten(self.avgpool(self.features(x)), 1)
            if self.layer == "pool5":
                return x
            x = self.fc6(x)
            if self.layer == "fc6":
                return x
            x = self.fc7(torch.relu(x))
            return torch.relu(x) if self.layer == "fc7-relu" else x

    return AlexNetFeatures().eval()


def alexnet_backbone(
    weights: str | Path | None = "imagenet",
    layer: str = "fc7",
    download: bool | None = False,
    seed: int = 0,
) -> Backbone:
    """Build the AlexNet feature extractor (see the module docstring for options)."""
    from torchvision.models import alexnet

    if layer not in LAYERS:
        raise UserError(
            f"backbone 'alexnet': unknown layer {layer!r}; use one of {', '.join(LAYERS)}"
        )
    choice = parse_weights(weights, NAME)
    if choice.kind == "none":
        path = None
        digest = random_digest(int(seed))
    else:
        path = choice.path if choice.kind == "file" else _fetch_imagenet(download)
        digest = file_sha256(path)

    def build() -> Any:
        """A full torchvision AlexNet (1,000-class head) with the chosen weights."""
        if path is None:
            with seeded(int(seed)):
                return alexnet(weights=None)
        net = alexnet(weights=None)
        load_into(net, load_state_dict_file(path, NAME), path, NAME)
        return net

    def make_finetune(num_classes: int) -> Any:
        """Fresh trainable AlexNet with a new ``num_classes`` head at ``classifier.6``."""
        import torch
        from torch import nn

        net = build()
        net.classifier[6] = nn.Linear(4096, int(num_classes))
        nn.init.normal_(
            net.classifier[6].weight, 0.0, 0.01, generator=torch.Generator().manual_seed(int(seed))
        )
        nn.init.zeros_(net.classifier[6].bias)
        return net.train()

    return Backbone(
        name=NAME,
        input_size=INPUT_SIZE,
        feature_dim=LAYERS[layer],
        extractor=_make_extractor(build(), layer),
        make_finetune=make_finetune,
        weights="none"
        if path is None
        else ("imagenet" if choice.kind == "imagenet" else str(path)),
        weights_digest=digest,
        pretrained=path is not None,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="bilinear",
        layer=layer,
        head_module="classifier.6",
        extra={
            "architecture": "torchvision.models.alexnet",
            **({"weights_url": WEIGHTS_URL} if choice.kind == "imagenet" else {}),
        },
        # measured (docs/backbones.md): in the CPU lanes batch 32 beats 64 (~290 vs
        # ~285 img/s bare, 256 vs 236-250 end to end); compiling does not help
        hints=RuntimeHints(cpu_batch_size=32),
    )


def validate_options(options: dict[str, Any]) -> None:
    """The layer and weights options, checked without building the network."""
    layer = options.get("layer", "fc7")
    if layer not in LAYERS:
        raise UserError(
            f"backbone 'alexnet': unknown layer {layer!r}; use one of {', '.join(LAYERS)}"
        )
    parse_weights(options.get("weights", "imagenet"), NAME)


@hookimpl
def leukobench_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(
            name=NAME,
            factory=alexnet_backbone,
            description="AlexNet (torchvision), 227x227, layer fc7 (pre-ReLU, as MATLAB) by default",
            input_size=INPUT_SIZE,
            feature_dim=4096,
            weight_source=f"torchvision IMAGENET1K_V1 ($TORCH_HOME/hub/checkpoints/{WEIGHTS_FILE})",
            licence="BSD-3-Clause (torchvision); ImageNet weights: non-commercial research",
            validate=validate_options,
        )
    ]
