"""bench.testing: the kit passes every registered plugin and catches broken ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.errors import UserError
from bench.registry import get_registry
from bench.specs import BackboneSpec, ClassifierSpec, DatasetSpec, ProtocolSpec
from bench.testing import (
    ContractError,
    check_backbone,
    check_classifier,
    check_dataset,
    check_protocol,
    checks_for,
)


def _alexnet_weights(tmp_path: Path) -> str:
    from torchvision.models import alexnet

    path = tmp_path / "alexnet.pth"
    torch.save(alexnet(weights=None).state_dict(), path)  # saved weights: the real loading path
    return str(path)


@pytest.mark.slow
def test_every_registered_backbone_passes(tmp_path):
    registry = get_registry()
    options = {
        "alexnet": {"weights": _alexnet_weights(tmp_path)},
        "efficientnet_lite0": {},
        "timm": {"model_name": "resnet18", "weights": "none"},
    }
    for name, spec in registry.backbones.items():
        assert name in options, f"add check options for the new backbone {name!r}"
        check_backbone(spec, options=options[name])


def test_every_registered_classifier_passes():
    for spec in get_registry().classifiers.values():
        check_classifier(spec)


SAMPLE_TABLES = {
    "features": {"backbones": ["efficientnet_lite0"], "classifiers": ["lda"], "folds": 2},
    "finetune": {
        "backbones": ["efficientnet_lite0"],
        "holdout": 0.34,
        "settings": {"epochs": 1, "batch_size": 4},
    },
}


def test_every_registered_protocol_passes_the_static_checks():
    protocols = get_registry().protocols
    assert {"features", "finetune"} <= set(protocols)
    for spec in protocols.values():
        check_protocol(spec)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SAMPLE_TABLES))
def test_builtin_protocols_run_with_picklable_jobs(name):
    check_protocol(get_registry().protocol(name), table=SAMPLE_TABLES[name])


def _folder(tmp_path: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("healthy", "leukemia"):
        (tmp_path / "set" / cls).mkdir(parents=True)
        for i in range(3):
            arr = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "set" / cls / f"{cls}_{i}.png")
    return tmp_path / "set"


def test_every_registered_dataset_passes(tmp_path):
    from conftest import shared_data_dir

    folder = _folder(tmp_path)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in sorted(folder.rglob("*.png")))
    )
    where = {
        "imagefolder": (folder, {}),
        "manifest": (manifest, {}),
        "synthetic": (None, {"n_per_class": 3}),
        "c-nmc": (shared_data_dir() / "cnmc2019_mini", {}),
        "all-idb2": (None, None),
    }
    for name, spec in get_registry().datasets.items():
        assert name in where, f"add check inputs for the new dataset plugin {name!r}"
        path, options = where[name]
        if options is None or (path is not None and not path.exists()):
            continue  # ALL-IDB2 is not among the shared sets (its loader has its own tests)
        check_dataset(spec, path, options=options)


# -- the kit catches what it should ------------------------------------------------------
class _WrongShape:
    def __init__(self, **_):
        pass

    def get_params(self, deep=True):
        return {}

    def set_params(self, **_):
        return self

    def fit(self, X, y):
        return self

    def predict(self, X):
        return np.zeros(len(X) + 1, dtype=int)

    def predict_proba(self, X):
        return np.full((len(X), 2), 0.5)


def test_a_classifier_with_wrong_predictions_fails():
    spec = ClassifierSpec("wrong", _WrongShape)
    with pytest.raises(ContractError, match="predict\\(\\) shape"):
        check_classifier(spec)


def test_a_backbone_that_downloads_fails():
    def factory(**_):
        import urllib.request

        urllib.request.urlopen("http://127.0.0.1:9/weights.pth", timeout=1)

    with pytest.raises(ContractError, match="network"):
        check_backbone(BackboneSpec("downloader", factory))


def test_a_loader_that_decodes_images_fails(tmp_path):
    folder = _folder(tmp_path)

    def factory(path, **_):
        from PIL import Image

        from bench.data.loaders import load_imagefolder

        Image.open(next(Path(path).rglob("*.png")))
        return load_imagefolder(path)

    with pytest.raises(ContractError, match="decoded an image"):
        check_dataset(DatasetSpec("decoder", factory), folder)


def test_a_loader_that_raises_a_bare_error_on_a_bad_path_fails(tmp_path):
    folder = _folder(tmp_path)

    def factory(path, **_):
        from bench.data.loaders import load_imagefolder

        if not Path(path).exists():
            raise FileNotFoundError(path)
        return load_imagefolder(path)

    with pytest.raises(ContractError, match="not UserError"):
        check_dataset(DatasetSpec("bare", factory), folder)


def test_a_protocol_with_an_undocumented_setting_fails():
    from bench.protocols.base import Protocol, Setting

    class Bad(Protocol):
        name = "bad"
        description = "a protocol whose setting has no description"
        settings = (Setting("alpha", float, 1.0, ""),)

        def cells(self, table, index, seed):
            return []

        plan = jobs = run_job = assemble = cells  # never called by the static checks

    with pytest.raises(ContractError, match="alpha"):
        check_protocol(ProtocolSpec("bad", Bad))


def test_checks_are_named_for_parametrize():
    spec = get_registry().classifier("lda")
    names = [repr(c) for c in checks_for(spec)]
    assert "lda:is_deterministic" in names and len(names) == len(set(names))


def test_a_non_spec_is_a_type_error():
    with pytest.raises(TypeError):
        checks_for(object())
    assert issubclass(ContractError, AssertionError) and not issubclass(ContractError, UserError)
