"""Backbone plugins: real offline weights, AlexNet layers, weight sources, fine-tune heads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.errors import UserError, WeightsNotFoundError
from bench.registry import get_registry
from bench.weights import file_sha256


def _preprocess(img: np.ndarray, backbone) -> torch.Tensor:
    """The backbone's own preprocessing: resize whole image, scale, normalise."""
    from PIL import Image

    from bench.data.decode import _RESAMPLE

    size = backbone.input_size
    im = Image.fromarray(img).convert("RGB").resize((size, size), _RESAMPLE[backbone.interpolation])
    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(backbone.mean)[:, None, None]
    std = torch.tensor(backbone.std)[:, None, None]
    return ((x - mean) / std)[None]


@pytest.fixture(scope="module")
def lite0():
    return get_registry().build_backbone("efficientnet_lite0")


def test_efficientnet_lite0_real_imagenet_weights(lite0) -> None:
    from skimage import data

    from plugins.efficientnet_lite import imagenet_model

    assert lite0.pretrained and lite0.feature_dim == 1280 and lite0.input_size == 224
    full = imagenet_model("efficientnet_lite0")
    cases = {
        "chelsea": (data.chelsea(), set(range(281, 286))),
        "coffee": (data.coffee(), {967, 968}),
    }
    for name, (img, good) in cases.items():
        x = _preprocess(img, lite0)
        with torch.inference_mode():
            feats = lite0.extractor(x)
            logits = full.get_classifier()(feats)  # the backbone's features feed the real head
            assert torch.allclose(logits, full(x), atol=1e-4)
        top5 = set(logits.topk(5).indices[0].tolist())
        assert top5 & good, f"{name}: top-5 {sorted(top5)} has none of {sorted(good)}"


def test_efficientnet_lite0_digest_is_weight_file_sha256(lite0) -> None:
    path = Path(lite0.extra["weights_file"])
    assert lite0.weights_digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(lite0.cache_identity()) == 32


def _random_alexnet(seed: int = 3):
    from torchvision.models import alexnet

    torch.manual_seed(seed)
    return alexnet(weights=None).eval()


def _reference_fc7(net, x: torch.Tensor) -> torch.Tensor:
    h = torch.flatten(net.avgpool(net.features(x)), 1)
    return net.classifier[4](torch.relu(net.classifier[1](h)))


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory) -> tuple[Path, object]:
    net = _random_alexnet()
    path = tmp_path_factory.mktemp("weights") / "alexnet-random.pth"
    torch.save(net.state_dict(), path)
    return path, net


def test_alexnet_layers_dims_and_relu(alexnet_file) -> None:
    path, _ = alexnet_file
    reg = get_registry()
    x = torch.randn(2, 3, 227, 227)
    out = {}
    for layer, dim in {"fc7": 4096, "fc6": 4096, "fc7-relu": 4096, "pool5": 9216}.items():
        b = reg.build_backbone("alexnet", weights=str(path), layer=layer)
        assert b.feature_dim == dim and b.layer == layer and b.input_size == 227
        with torch.inference_mode():
            out[layer] = b.extractor(x)
        assert out[layer].shape == (2, dim)
    assert (out["fc7"] < 0).any(), "fc7 must be taken before relu7"
    assert torch.equal(out["fc7-relu"], torch.relu(out["fc7"]))
    assert (out["pool5"] >= 0).all()
    with pytest.raises(UserError, match="unknown layer"):
        reg.build_backbone("alexnet", weights=str(path), layer="fc8x")


def test_alexnet_local_file_round_trip(alexnet_file, tmp_path) -> None:
    from safetensors.torch import save_file

    path, net = alexnet_file
    x = torch.randn(3, 3, 227, 227)
    with torch.inference_mode():
        want = _reference_fc7(net, x)
    st = tmp_path / "alexnet.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(st))
    for source in (path, st):
        b = get_registry().build_backbone("alexnet", weights=str(source))
        assert b.pretrained and b.weights == str(source.resolve())
        assert b.weights_digest == hashlib.sha256(source.read_bytes()).hexdigest()
        with torch.inference_mode():
            torch.testing.assert_close(b.extractor(x), want, rtol=1e-4, atol=1e-4)


def test_alexnet_imagenet_from_fake_torch_home(alexnet_file, tmp_path, monkeypatch) -> None:
    path, net = alexnet_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(path.read_bytes())
    b = get_registry().build_backbone("alexnet")
    assert b.weights == "imagenet" and b.pretrained
    assert b.weights_digest == file_sha256(target)
    x = torch.randn(1, 3, 227, 227)
    with torch.inference_mode():
        torch.testing.assert_close(b.extractor(x), _reference_fc7(net, x), rtol=1e-4, atol=1e-4)


def test_alexnet_missing_weights_names_the_path(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("LEUKOBENCH_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(WeightsNotFoundError) as err:
        get_registry().build_backbone("alexnet")
    expected = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert str(expected) in str(err.value)
    assert "--allow-download" in str(err.value) and "weights=PATH" in str(err.value)
    assert err.value.exit_code == 2


def test_bad_weight_files_are_user_errors(tmp_path) -> None:
    reg = get_registry()
    with pytest.raises(UserError, match="does not exist"):
        reg.build_backbone("alexnet", weights=str(tmp_path / "nope.pth"))
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(UserError, match="do not fit"):
        reg.build_backbone("alexnet", weights=str(wrong))
    with pytest.raises(UserError, match="tensors"):
        reg.build_backbone("efficientnet_lite0", weights=str(wrong))


def test_random_init_only_when_asked_and_marked() -> None:
    reg = get_registry()
    a = reg.build_backbone("alexnet", weights="none", layer="fc6")
    b = reg.build_backbone("alexnet", weights="none", layer="fc6")
    assert not a.pretrained and a.weights_digest == "random:0"
    assert a.describe()["pretrained"] is False
    x = torch.randn(1, 3, 227, 227)
    with torch.inference_mode():
        assert torch.equal(a.extractor(x), b.extractor(x))  # seeded, reproducible
    c = reg.build_backbone("alexnet", weights="none", layer="fc6", seed=1)
    assert c.cache_identity() != a.cache_identity()


def test_timm_family_tiny_model_and_unknown_name() -> None:
    reg = get_registry()
    b = reg.build_backbone("timm/resnet18", weights="none")
    assert b.name == "timm/resnet18" and b.feature_dim == 512 and not b.pretrained
    assert b.interpolation == "bicubic" and b.input_size == 224
    with torch.inference_mode():
        assert b.extractor(torch.randn(2, 3, 224, 224)).shape == (2, 512)
    with pytest.raises(UserError, match="did you mean 'timm/resnet18'"):
        reg.build_backbone("timm/resnt18", weights="none")


def test_timm_missing_weights_offline(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.delenv("LEUKOBENCH_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(WeightsNotFoundError, match="models--timm--resnet18"):
        get_registry().build_backbone("timm/resnet18")


def test_timm_weights_from_fake_hf_cache(tmp_path, monkeypatch) -> None:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(5)
    src = timm.create_model("resnet18", pretrained=False).eval()
    snap = tmp_path / "models--timm--resnet18.a1_in1k" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    save_file(src.state_dict(), str(snap / "model.safetensors"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    b = get_registry().build_backbone("timm/resnet18")
    assert b.pretrained and b.weights == "imagenet"
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(
            b.extractor(x), src.forward_head(src.forward_features(x), pre_logits=True)
        )


@pytest.mark.parametrize("name", ["alexnet", "efficientnet_lite0", "timm/resnet18"])
def test_make_finetune_has_new_head(name: str) -> None:
    b = get_registry().build_backbone(name, weights="none")
    net = b.make_finetune(3)
    head = net.get_submodule(b.head_module)
    assert isinstance(head, torch.nn.Linear) and head.out_features == 3
    assert net.training
    net.eval()
    with torch.inference_mode():
        assert net(torch.randn(2, 3, b.input_size, b.input_size)).shape == (2, 3)


def test_make_finetune_keeps_pretrained_body(lite0) -> None:
    net = lite0.make_finetune(2).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(
            net.forward_head(net.forward_features(x), pre_logits=True), lite0.extractor(x)
        )


def test_weights_digest_cached_on_disk(tmp_path) -> None:
    from bench import weights as w

    f = tmp_path / "w.pth"
    f.write_bytes(b"abc")
    assert file_sha256(f) == hashlib.sha256(b"abc").hexdigest()
    w._DIGEST_MEMO.clear()
    assert str(f.resolve()) in w._digest_store().read_text()
    assert file_sha256(f) == hashlib.sha256(b"abc").hexdigest()
