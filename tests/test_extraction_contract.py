"""Backbone runtime hints as a typed contract, and the shared helpers extraction and
fine-tuning use (normaliser, autocast, progress, device, mask), and the package's layout."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.backbone import Backbone, RuntimeHints
from bench.data.imageset import Samples
from bench.data.mask import mask_fns
from bench.device import autocast, torch_device
from bench.errors import UserError
from bench.extraction import Normaliser, default_batch_size, extract_features, numerics_tag
from bench.extraction.settings import want_compile
from bench.progress import progress_bar, rate_bar
from bench.registry import get_registry
from tests.test_features import _imageset, _tiny_backbone, _write_images

REPO = Path(__file__).resolve().parents[1]


def _backbone(**kwargs) -> Backbone:
    return Backbone(
        name="hinted",
        input_size=32,
        feature_dim=8,
        extractor=torch.nn.Identity(),
        make_finetune=lambda k: None,
        weights="none",
        weights_digest="random:0",
        pretrained=False,
        **kwargs,
    )


def test_builtin_backbones_declare_typed_hints_and_records_still_show_them() -> None:
    reg = get_registry()
    alex = reg.build_backbone("alexnet", weights="none")
    assert alex.hints == RuntimeHints(cpu_batch_size=32)
    assert "cpu_batch_size" not in alex.extra  # declared, not duck-typed
    assert alex.describe()["extra"] == {
        "architecture": "torchvision.models.alexnet",
        "cpu_batch_size": 32,
    }
    lite = reg.build_backbone("efficientnet_lite0", weights="none")
    assert lite.hints == RuntimeHints(
        cpu_batch_size=32, cpu_compile=True, cuda_autocast="float16", cpu_forward_chunk=16
    )
    extra = lite.describe()["extra"]
    # the chunk never changes a bit (probed), so records show what they always showed
    assert list(extra)[-3:] == ["cpu_batch_size", "cpu_compile", "cuda_autocast"]
    assert "cpu_forward_chunk" not in extra
    assert default_batch_size(lite, "cpu") == 32 and default_batch_size(lite, "cuda") == 256
    assert numerics_tag("cuda", lite) == "cuda-float16" and numerics_tag("cpu", lite) == ""
    assert want_compile(lite, "cpu", 5000) and not want_compile(lite, "cpu", 4999)
    assert not want_compile(alex, "cpu", 10**6) and not want_compile(lite, "cuda", 10**6)


def test_hints_in_extra_still_work_and_are_read_once() -> None:
    """A third-party plugin that sets the old ``extra`` keys keeps its behaviour and record."""
    legacy = {"cpu_batch_size": 16, "cpu_compile": True, "cuda_autocast": "float16", "x": 1}
    bb = _backbone(extra=dict(legacy))
    assert bb.hints == RuntimeHints(cpu_batch_size=16, cpu_compile=True, cuda_autocast="float16")
    assert default_batch_size(bb, "cpu") == 16
    assert numerics_tag("cuda", bb) == "cuda-float16"
    assert want_compile(bb, "cpu", 5000)
    assert json.dumps(bb.describe()["extra"]) == json.dumps(legacy)  # same record as before
    # explicit hints win over extra keys; no hints at all: the defaults
    assert _backbone(extra={"cpu_batch_size": 4}, hints=RuntimeHints(cpu_batch_size=8)).hints == (
        RuntimeHints(cpu_batch_size=8)
    )
    plain = _backbone()
    assert plain.hints == RuntimeHints() and "extra" not in plain.describe()
    assert default_batch_size(plain, "cpu") == 32 and numerics_tag("cuda", plain) == "cuda-bf16"
    assert default_batch_size(_backbone(extra={"cpu_batch_size": 0}), "cpu") == 32  # 0: no hint


def test_bad_hints_are_user_errors_naming_the_backbone() -> None:
    with pytest.raises(UserError, match="cuda_autocast 'int8' is not a known dtype"):
        RuntimeHints(cuda_autocast="int8")
    with pytest.raises(UserError, match="cpu_batch_size must be a positive integer"):
        RuntimeHints(cpu_batch_size=0)
    with pytest.raises(UserError, match="cpu_forward_chunk must be a positive integer"):
        RuntimeHints(cpu_forward_chunk=True)
    with pytest.raises(UserError, match="backbone hinted: cuda_autocast 'int8'"):
        _backbone(extra={"cuda_autocast": "int8"})
    with pytest.raises(UserError, match="backbone hinted"):
        _backbone(extra={"cpu_batch_size": "many"})


def test_hints_are_documented() -> None:
    text = (REPO / "docs" / "backbones.md").read_text() + (REPO / "docs" / "plugins.md").read_text()
    for name in RuntimeHints.__dataclass_fields__:
        assert f"`{name}`" in text, name
    assert "RuntimeHints" in (REPO / "docs" / "plugins.md").read_text()


def test_normaliser_forms_agree_and_keep_their_arithmetic() -> None:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    norm = Normaliser(mean, std)
    imgs = np.random.default_rng(0).integers(0, 256, (3, 20, 24, 3), dtype=np.uint8)
    per_image = torch.empty(3, 20, 24, 3)
    for i in range(3):
        norm.into(per_image[i], imgs[i])
    batch = norm.tensor(torch.from_numpy(imgs).permute(0, 3, 1, 2))
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch, per_image.permute(0, 3, 1, 2))  # the same fused addcmul
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float()
    assert torch.equal(norm.training(imgs), (x - m * 255.0) / (s * 255.0))  # training's order
    np.testing.assert_allclose(norm.training(imgs).numpy(), batch.numpy(), rtol=1e-5, atol=1e-5)


def test_autocast_is_a_no_op_off_cuda_and_checks_its_dtype() -> None:
    for device in ("cpu", torch.device("cpu"), "mps"):
        for dtype in ("bf16", "float16", None, "none"):
            with autocast(device, dtype):
                assert not torch.is_autocast_enabled()
    with pytest.raises(UserError, match="unknown autocast dtype 'int8'"):
        autocast("cuda", "int8")


def test_device_resolution_and_torch_devices() -> None:
    assert torch_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="unknown device 'gpu'"):
        torch_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            torch_device("cuda")


def test_progress_bars_show_what_they_count(tmp_path, capsys) -> None:
    with rate_bar(False, 3, "quiet") as update:
        update(3)  # a no-op
    with progress_bar(False) as bar:
        assert bar is None
    iset, digests = _imageset(_write_images(tmp_path / "data", 4))
    extract_features(
        Samples.originals(iset), _tiny_backbone(), digests=digests, cache=None, progress=True
    )
    out = capsys.readouterr().out
    assert "extract" in out and "tiny" in out and "img/s" in out and "4/4" in out


def test_mask_fns() -> None:
    assert mask_fns(None) == ("", None) and mask_fns([]) == ("", None)
    key, fn = mask_fns([[0.5, 0.0, 1.0, 1.0]])
    assert key == "mask[0.5,0,1,1]"
    img = np.full((4, 4, 3), 200, np.uint8)
    out = fn(img)
    assert out[:, 2:].max() == 0 and out[:, :2].min() == 200 and img.min() == 200


def test_extraction_modules_are_small_and_share_only_public_names() -> None:
    """No module over 500 lines; no underscore name imported from another module."""
    for path in sorted((REPO / "bench" / "extraction").glob("*.py")):
        text = path.read_text()
        assert text.count("\n") <= 500, path.name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bench"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, (path.name, node.module, private)
    assert not (REPO / "bench" / "features.py").exists()
