"""Nothing stored is trusted blindly: checksummed caches, model files and training states;
strict JSON; non-UTF-8 file names; write failures as one clear error."""

from __future__ import annotations

import errno
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from bench import strict_json
from bench.atomic import atomic_write_bytes, atomic_write_text
from bench.checkpoint import (
    DIGEST_KEY,
    META_KEY,
    SCHEMA,
    load_model_file,
    load_training_state,
    save_model_file,
    save_training_state,
)
from bench.crossval import FoldPrediction
from bench.data.validate import fingerprint
from bench.errors import UserError, WriteError
from bench.feature_cache import CacheCorruptionWarning, FeatureCache
from bench.prediction_cache import PredictionCache
from bench.readable import readable
from bench.results import load_record, write_record


# -- Model 1 prediction cache ------------------------------------------------------------
def _preds() -> list[FoldPrediction]:
    rng = np.random.default_rng(0)
    return [
        FoldPrediction(
            fold=i,
            test_index=np.arange(i * 10, i * 10 + 10),
            y_true=rng.integers(0, 2, 10),
            y_pred=rng.integers(0, 2, 10),
            score=rng.random(10),
            fit_s=0.01,
        )
        for i in range(3)
    ]


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "garbage":
        path.write_bytes(b"not a zip file at all")
    else:  # flip one bit inside the first score array's data
        raw = np.asarray(_preds()[0].score).tobytes()
        at = bytes(data).index(raw[:16]) + 3
        data[at] ^= 0x04
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncate", "flip", "garbage"])
def test_corrupt_prediction_entry_is_warned_once_deleted_and_refitted(tmp_path, how):
    cache = PredictionCache(tmp_path)
    cache.put("ab" * 32, _preds())
    path = next(cache.root.glob("*/*.npz"))
    _damage(path, how)
    with pytest.warns(CacheCorruptionWarning, match=f"{path.name}.*corrupt") as record:
        assert cache.get("ab" * 32) is None
    assert len(record) == 1 and not path.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second look: just absent, no second warning
        assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, _preds())  # recomputed and stored again
    back = cache.get("ab" * 32)
    assert back is not None and np.array_equal(back[2].score, _preds()[2].score)


def test_prediction_entry_without_checksum_is_refitted(tmp_path):
    # (one without its sha256 cannot be told from an edited one: it is only worth a refit)
    cache = PredictionCache(tmp_path)
    cache.put("cd" * 32, _preds())
    path = next(cache.root.glob("*/*.npz"))
    with np.load(path) as z:
        old = {k: z[k] for k in z.files if k != "sha256"}
    np.savez(path, **old)
    with pytest.warns(CacheCorruptionWarning, match="no checksum") as record:
        assert cache.get("cd" * 32) is None
    assert len(record) == 1 and not path.exists()


# -- model files ------------------------------------------------------------------------
def _meta() -> dict:
    return {"kind": "finetune", "classes": ["healthy", "leukemia"], "positive": "leukemia"}


def test_bit_flip_in_model_tensors_is_refused_naming_the_file(tmp_path):
    w = torch.linspace(0.5, 1.5, 4096)
    path = save_model_file(tmp_path / "m.safetensors", {"w": w}, _meta())
    data = bytearray(path.read_bytes())
    at = bytes(data).index(w[1000:1004].numpy().tobytes())
    data[at + 1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"m\.safetensors is corrupt.*checksum"):
        load_model_file(path)


def test_model_file_without_checksum_is_refused(tmp_path):
    # (a file from before checksums cannot be told from one whose checksum was removed)
    path = tmp_path / "old.safetensors"
    meta = {"schema": SCHEMA, **_meta()}
    save_file({"w": torch.ones(3)}, str(path), metadata={META_KEY: json.dumps(meta)})
    with pytest.raises(
        UserError, match=rf"old\.safetensors carries no valid checksum \({DIGEST_KEY}"
    ):
        load_model_file(path)


# -- training states ----------------------------------------------------------------------
def test_bit_flip_in_training_state_reads_as_empty_with_a_warning(tmp_path):
    model = torch.nn.Linear(64, 64)
    path = tmp_path / "state.pt"
    save_training_state(path, {"schema": SCHEMA, "model": model.state_dict(), "epoch": 3})
    assert load_training_state(path)["epoch"] == 3
    data = bytearray(path.read_bytes())
    at = bytes(data).index(model.weight.detach()[10, :4].numpy().tobytes())
    data[at + 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.warns(CacheCorruptionWarning, match="state.pt is corrupt"):
        assert load_training_state(path) == {}


def test_resume_from_a_bit_flipped_state_trains_the_fold_again(tmp_path, monkeypatch):
    from test_finetune import register_tiny, run_tiny

    from bench.protocols.finetune import training as ft

    register_tiny()
    whole = run_tiny(tmp_path / "whole", epochs=3)[0]
    real_save = ft.save_training_state

    def save_then_die(path, state):
        real_save(path, state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(ft, "save_training_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_tiny(tmp_path / "killed", epochs=3)
    monkeypatch.undo()
    state_path = tmp_path / "killed/fold-00/state.pt"
    saved = torch.load(state_path, weights_only=True)
    first = next(t for t in saved["model"].values() if t.numel() >= 8)
    data = bytearray(state_path.read_bytes())
    at = bytes(data).index(first.reshape(-1)[:4].numpy().tobytes())
    data[at + 1] ^= 0x20
    state_path.write_bytes(bytes(data))
    with pytest.warns(CacheCorruptionWarning, match="trained again"):
        again = run_tiny(tmp_path / "killed", epochs=3)[0]
    assert not again.resumed and again.history == whole.history
    assert np.array_equal(again.score, whole.score)


# -- strict JSON ----------------------------------------------------------------------------
def _strict_load(text: str):
    def refuse(token: str):
        raise ValueError(f"non-JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_strict_json_writes_null_for_nan_and_inf():
    obj = {
        "a": float("nan"),
        "b": [float("inf"), -float("inf"), 1.5],
        "c": np.float64("nan"),
        "d": np.array([1.0, np.nan]),
        "e": (np.int64(3), np.bool_(True)),
        "f": Path("x/y"),
    }
    text = strict_json.dumps(obj)
    assert _strict_load(text) == {
        "a": None,
        "b": [None, None, 1.5],
        "c": None,
        "d": [1.0, None],
        "e": [3, True],
        "f": "x/y",
    }


def test_records_are_strict_json_and_old_records_with_nan_still_load(tmp_path):
    record = {
        "schema": "leukobench.result/1",
        "run_id": "r1",
        "dataset": {"name": "d"},
        "cells": [{"id": "c", "metrics": {"mcc": float("nan"), "acc": np.float32(0.5)}}],
    }
    path = write_record(record, tmp_path)
    assert _strict_load(path.read_text())["cells"][0]["metrics"] == {"mcc": None, "acc": 0.5}
    old = tmp_path / "old.json"
    old.write_text(path.read_text().replace("null", "NaN"))
    assert np.isnan(load_record(old)["cells"][0]["metrics"]["mcc"])


# -- file names that are not UTF-8 ---------------------------------------------------------------
def test_fingerprint_unchanged_for_utf8_names_and_defined_for_others():
    import hashlib

    rel, dig, lab = (
        ["healthy/caf\u00e9.png", "leukemia/b.png"],
        ["d1", "d2"],
        ["healthy", "leukemia"],
    )
    h = hashlib.sha256()
    for r, d, la in sorted(zip(rel, dig, lab)):
        h.update(f"{r}\t{d}\t{la}\n".encode())
    assert fingerprint(rel, dig, lab) == h.hexdigest()  # existing caches stay valid
    odd = os.fsdecode(b"healthy/bad\xffname.png")
    assert len(fingerprint([odd], ["d"], ["healthy"])) == 64
    assert fingerprint([odd], ["d"], ["healthy"]) != fingerprint(
        ["healthy/bad"], ["d"], ["healthy"]
    )


def test_readable_shows_undecodable_bytes_as_escapes(tmp_path):
    odd = os.fsdecode(b"bad\xffname.png")
    assert readable(odd) == "bad\\xffname.png" and readable(Path(odd)) == "bad\\xffname.png"
    assert readable("caf\u00e9") == "caf\u00e9"
    atomic_write_text(tmp_path / "t.txt", f"{odd}\n")
    assert (tmp_path / "t.txt").read_text() == "bad\\xffname.png\n"


# -- write failures ----------------------------------------------------------------------------
def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_is_a_write_error_naming_the_path_and_nothing_is_left(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", _no_space)
    target = tmp_path / "out" / "record.json"
    with pytest.raises(WriteError, match=r"cannot write .*record\.json: No space left"):
        atomic_write_bytes(target, b"{}")
    assert list((tmp_path / "out").iterdir()) == []  # no half-written file, no temp file


def test_disk_full_in_the_feature_cache_is_a_write_error(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    monkeypatch.setattr(os, "writev", _no_space)
    with pytest.raises(WriteError, match=r"packs/.*\.lbp: No space left"):
        cache.put_many({"k" * 64: np.ones(4, np.float32)}, "bb")
    assert list(cache.packs.iterdir()) == []


@pytest.mark.parametrize(
    "where, reason",
    [
        ("file/sub/x.json", "not a folder"),
        ("/proc/leukobench-test/x.json", "No such file"),
        ("x" * 300 + ".json", "too long"),
        ("/sys/x.json", "ermission"),
    ],
)
def test_unwritable_places_are_write_errors(tmp_path, where, reason):
    (tmp_path / "file").write_text("a file, not a folder")
    target = tmp_path / where if not where.startswith("/") else Path(where)
    with pytest.raises(WriteError, match=reason):
        atomic_write_text(target, "{}")


# -- folders ----------------------------------------------------------------------------------
def test_symlinked_folders_are_followed_once_and_loops_reported(tmp_path):
    from PIL import Image

    from bench.data.loaders import list_images, load_imagefolder

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.new("RGB", (8, 8)).save(elsewhere / "linked.png")
    for cls in ("healthy", "leukemia"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8), (1, 2, 3) if cls == "healthy" else (9, 9, 9)).save(
            tmp_path / "d" / cls / "a.png"
        )
    os.symlink(elsewhere, tmp_path / "d/healthy/more")
    imageset = load_imagefolder(tmp_path / "d")
    assert sorted(imageset.relpath(i) for i in range(len(imageset))) == [
        "healthy/a.png",
        "healthy/more/linked.png",
        "leukemia/a.png",
    ]
    os.symlink("..", tmp_path / "d/leukemia/up")
    with pytest.raises(UserError, match=r"leukemia/up.*symbolic link loop"):
        list_images(tmp_path / "d")


def test_console_is_wide_when_not_a_terminal(monkeypatch, capsys):
    from bench.cli.common import PIPE_WIDTH, make_console

    monkeypatch.delenv("COLUMNS", raising=False)
    assert make_console().width == PIPE_WIDTH  # (pytest's captured stdout is not a terminal)
    monkeypatch.setenv("COLUMNS", "100")
    assert make_console().width == 100
