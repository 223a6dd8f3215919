"""Model files and training states: round trips, atomic writes, and clear errors for bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from bench.checkpoint import (
    MODEL_SCHEMA,
    SCHEMA,
    load_model_file,
    load_training_state,
    read_model_meta,
    save_feature_pipeline,
    save_model_file,
    save_training_state,
)
from bench.errors import UserError


def _meta() -> dict:
    return {"kind": "finetune", "classes": ["healthy", "leukemia"], "positive": "leukemia"}


def test_model_file_round_trip_is_atomic(tmp_path):
    tensors = {"a.weight": torch.randn(3, 4), "b": torch.arange(5)}
    path = save_model_file(tmp_path / "m.safetensors", tensors, {**_meta(), "metrics": {"x": 1}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temp left
    loaded, meta = load_model_file(path)
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert meta["schema"] == MODEL_SCHEMA and meta["metrics"] == {"x": 1}
    assert read_model_meta(path) == meta


def test_channels_last_tensors_are_saved_contiguously(tmp_path):
    w = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    loaded, _ = load_model_file(save_model_file(tmp_path / "m.safetensors", {"w": w}, _meta()))
    assert torch.equal(loaded["w"], w)


def test_unknown_kind_is_refused_on_save(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        save_model_file(tmp_path / "m.safetensors", {}, {"kind": "pickle"})


def _write_bad(path, what: str) -> None:
    good = tmp = path.parent / "good.safetensors"
    save_model_file(tmp, {"w": torch.randn(64, 64)}, _meta())
    if what == "truncated":
        path.write_bytes(good.read_bytes()[:-100])
    elif what == "garbage":
        path.write_bytes(b"\x00\x01 definitely not a model")
    elif what == "empty":
        path.write_bytes(b"")
    elif what == "foreign":
        save_file({"w": torch.zeros(2)}, str(path))  # a safetensors file without our metadata
    elif what == "pickle":
        torch.save({"w": torch.zeros(2)}, path)
    elif what == "schema":
        save_file(
            {"w": torch.zeros(2)}, str(path), metadata={"leukobench": json.dumps({"schema": "x/9"})}
        )
    elif what == "badjson":
        save_file({"w": torch.zeros(2)}, str(path), metadata={"leukobench": "{not json"})


@pytest.mark.parametrize(
    "what, pattern",
    [
        ("truncated", "corrupt or truncated"),
        ("garbage", "corrupt or truncated"),
        ("empty", "corrupt or truncated"),
        ("pickle", "corrupt or truncated"),
        ("foreign", "not a LeukoBench checkpoint"),
        ("schema", "schema 'x/9'"),
        ("badjson", "unreadable"),
    ],
)
def test_bad_model_files_give_clear_user_errors(tmp_path, what, pattern):
    path = tmp_path / "bad.safetensors"
    _write_bad(path, what)
    with pytest.raises(UserError, match=pattern) as info:
        load_model_file(path)
    assert "bad.safetensors" in str(info.value)


def test_missing_model_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_model_file(tmp_path / "nope.safetensors")


def test_training_state_round_trip_with_rng_and_optimizer(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {
        "schema": SCHEMA,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.default_rng(5).bit_generator.state,
        "history": [{"epoch": 1, "loss": 0.5}],
    }
    save_training_state(tmp_path / "state.pt", state)
    back = load_training_state(tmp_path / "state.pt")
    assert back["history"] == state["history"] and back["numpy_rng"] == state["numpy_rng"]
    opt2 = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(back["optimizer"])
    buf = opt2.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(buf, opt.state_dict()["state"][0]["momentum_buffer"])


class _Evil:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_training_state_never_unpickles_objects(tmp_path, capsys):
    torch.save({"schema": SCHEMA, "x": _Evil()}, tmp_path / "state.pt")
    with pytest.raises(UserError, match="corrupt or not a LeukoBench state"):
        load_training_state(tmp_path / "state.pt")
    assert "arbitrary code ran" not in capsys.readouterr().out


def test_foreign_training_state(tmp_path):
    torch.save({"model": {}}, tmp_path / "state.pt")
    with pytest.raises(UserError, match="not a LeukoBench"):
        load_training_state(tmp_path / "state.pt")


def test_feature_pipeline_file(tmp_path):
    X = np.random.default_rng(0).normal(size=(6, 4))
    y = np.array([0, 1, 0, 1, 0, 1])
    path = save_feature_pipeline(
        tmp_path / "p.safetensors",
        "tiny",
        {"input_size": 32},
        "logreg",
        {"C": 1.0},
        X,
        y,
        ["healthy", "leukemia"],
        "leukemia",
        {"input_size": 32, "interpolation": "bilinear", "mean": [0, 0, 0], "std": [1, 1, 1]},
        metrics={"accuracy": 1.0},
    )
    tensors, meta = load_model_file(path)
    assert meta["kind"] == "features" and meta["classifier"] == {
        "name": "logreg",
        "options": {"C": 1.0},
    }
    assert meta["backbone"]["options"] == {"input_size": 32} and meta["n_train"] == 6
    assert np.allclose(tensors["X_train"].numpy(), X.astype(np.float32))
    assert tensors["y_train"].tolist() == y.tolist()
    with pytest.raises(ValueError, match="X_train"):
        save_feature_pipeline(
            tmp_path / "q.safetensors", "t", {}, "c", {}, X, y[:3], ["a", "b"], "b", {}
        )
