"""Model files are sealed: metadata and tensors checksummed, metadata validated, on real files.

The Model 1 pipeline comes from a real ``leukobench run`` with ``save_model = true``
and the fine-tuned network from the real training loop; each is edited the way a
user, a tool or a flipped bit could, and ``leukobench predict`` must refuse it with
exit 2 and one line naming the file.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from test_finetune import register_tiny, run_tiny

from bench.checkpoint import (
    DIGEST_KEY,
    META_DIGEST_KEY,
    META_KEY,
    MODEL_SCHEMA,
    SCHEMA,
    LegacyModelFileWarning,
    load_model_file,
    metadata_digest,
    read_model_meta,
    save_feature_pipeline,
    save_model_file,
)
from bench.cli import main
from bench.errors import UserError

SUITE = """
[suite]
name = "sealed"
[data]
dataset = "synthetic"
options = { n_per_class = 6, size = 64 }
[[protocol]]
kind = "features"
backbones = ["timm/resnet18"]
classifiers = ["lda"]
folds = 2
save_model = true
[backbone."timm/resnet18"]
weights = "none"
"""


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    """A Model 1 pipeline (.lbmodel) saved by a real run, and nothing else touched."""
    from bench.cache_paths import set_cache_root
    from bench.registry import reset_registry

    root = tmp_path_factory.mktemp("sealed-run")
    (root / "s.toml").write_text(SUITE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEUKOBENCH_CACHE", str(root / "cache"))
        reset_registry()
        argv = ["run", str(root / "s.toml"), "--results-dir", str(root / "r"), "--no-progress"]
        assert main(argv) == 0
        reset_registry()
        set_cache_root(None)
    (path,) = (root / "r" / "models").glob("*/*.lbmodel")
    return path


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory) -> Path:
    """A fine-tuned network's model file, written by the real training loop."""
    register_tiny()
    return run_tiny(tmp_path_factory.mktemp("sealed-ft") / "work", epochs=1)[0].last_path


@pytest.fixture
def images(tmp_path) -> Path:
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (64, 64), (200, 80, 90)).save(folder / "a.png")
    Image.new("RGB", (64, 64), (90, 80, 200)).save(folder / "b.png")
    return folder


def _split(data: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _meta(path: Path) -> dict:
    return json.loads(_split(path.read_bytes())[0]["__metadata__"][META_KEY])


def _edit(src: Path, dst: Path, change: Callable[[dict], object], reseal: bool = False) -> Path:
    """``dst``: ``src`` with its metadata changed in place by ``change`` (as modeltool.py does).

    ``reseal``: the metadata checksum recomputed, as a forger (or a bug) would.
    """
    header, data = _split(src.read_bytes())
    meta = json.loads(header["__metadata__"][META_KEY])
    change(meta)
    if reseal:
        meta[META_DIGEST_KEY] = metadata_digest(meta)
    header["__metadata__"][META_KEY] = json.dumps(meta, sort_keys=True)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    dst.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return dst


def _predict(capsys, model: Path, images: Path) -> tuple[int, str, str]:
    code = main(["predict", "--model", str(model), str(images), "--format", "csv"])
    out = capsys.readouterr()
    return code, out.out, out.err


def _refused(capsys, model: Path, images: Path, pattern: str, hint: str = "re-save it") -> str:
    code, out, err = _predict(capsys, model, images)
    assert code == 2 and not out, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err  # one line, no warning before it
    assert model.name in lines[0] and hint in lines[0], lines[0]
    assert pattern in lines[0], lines[0]
    return lines[0]


def _set(*keys: str, value: object) -> Callable[[dict], None]:
    def change(meta: dict) -> None:
        node = meta
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return change


def _swap(meta: dict) -> None:
    meta["classes"] = meta["classes"][::-1]


SEALED = "does not match its checksum (metadata_sha256)"
EDITS = {
    "swap-classes": (_swap, SEALED),
    "positive": (_set("positive", value="healthy"), SEALED),
    "mean": (_set("preprocessing", "mean", value=[0.785, 0.456, 0.406]), SEALED),
    "input-size": (_set("preprocessing", "input_size", value=64), SEALED),
    "interpolation": (_set("preprocessing", "interpolation", value="nearest"), SEALED),
    "mask": (_set("preprocessing", "mask", value=[[0, 0, 1, 1]]), SEALED),
    "classifier-options": (_set("classifier", "options", value={"C": 1e-6}), SEALED),
    "classifier-swap": (_set("classifier", "name", value="knn1"), SEALED),
    "classes-3": (_set("classes", value=["a", "b", "c"]), SEALED),
    "classes-str": (_set("classes", value="ab"), SEALED),
    "n-train": (_set("n_train", value=5), SEALED),
    "backbone-options": (_set("backbone", "options", value={"weights": "imagenet"}), SEALED),
    "no-metadata-digest": (lambda m: m.pop(META_DIGEST_KEY), "lacks its metadata checksum"),
    "no-tensors-digest": (lambda m: m.pop(DIGEST_KEY), "carries no valid checksum"),
    "no-digests": (
        lambda m: (m.pop(DIGEST_KEY), m.pop(META_DIGEST_KEY)),
        "carries no valid checksum",
    ),
}


def test_the_saved_pipeline_is_sealed_and_predicts(pipeline, images, capsys):
    meta = read_model_meta(pipeline)
    assert meta["schema"] == MODEL_SCHEMA and meta[META_DIGEST_KEY] == metadata_digest(meta)
    code, out, err = _predict(capsys, pipeline, images)
    assert code == 0 and not err, err
    rows = out.strip().splitlines()[1:]
    assert len(rows) == 2 and all(r.split(",")[1] in meta["classes"] for r in rows)


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_pipeline_is_refused_in_one_line(pipeline, images, tmp_path, capsys, edit):
    change, pattern = EDITS[edit]
    bad = _edit(pipeline, tmp_path / f"{edit}.lbmodel", change)
    _refused(capsys, bad, images, pattern)
    with pytest.raises(UserError, match=edit):
        load_model_file(bad)


def test_one_flipped_bit_in_a_class_name_is_refused(pipeline, images, tmp_path, capsys):
    data = bytearray(pipeline.read_bytes())
    at = bytes(data).index(b"leukemia", 8)
    data[at + 7] ^= 0x20  # leukemia -> leukemiA, inside the header
    bad = tmp_path / "bitflip.lbmodel"
    bad.write_bytes(bytes(data))
    _refused(capsys, bad, images, SEALED)


def test_no_digest_and_a_flipped_training_label_is_refused(pipeline, images, tmp_path, capsys):
    bad = _edit(pipeline, tmp_path / "nosha.lbmodel", lambda m: m.pop(DIGEST_KEY))
    data = bytearray(bad.read_bytes())
    header, _ = _split(bytes(data))
    start = 8 + struct.unpack("<Q", data[:8])[0] + header["y_train"]["data_offsets"][0]
    data[start + 8] ^= 0x01  # y_train[1]
    bad.write_bytes(bytes(data))
    _refused(capsys, bad, images, "carries no valid checksum")


def test_a_swapped_fine_tuned_network_is_refused(finetuned, images, tmp_path, capsys):
    register_tiny()
    assert _predict(capsys, finetuned, images)[0] == 0
    bad = _edit(finetuned, tmp_path / "ft-swap.safetensors", _swap)
    _refused(capsys, bad, images, SEALED)


# -- metadata that is sealed but malformed (a forger, a bug) is refused naming the key ----------
MALFORMED = {
    "classes-str": (_set("classes", value="ab"), "'classes'"),
    "classes-twice": (_set("classes", value=["healthy", "healthy"]), "'classes'"),
    "classes-3": (_set("classes", value=["healthy", "leukemia", "blast"]), "'classes'"),
    "classes-empty-name": (_set("classes", value=["", "leukemia"]), "'classes'"),
    "positive": (_set("positive", value="other"), "'positive'"),
    "input-size-0": (_set("preprocessing", "input_size", value=0), "'preprocessing.input_size'"),
    "input-size-str": (
        _set("preprocessing", "input_size", value="224"),
        "'preprocessing.input_size'",
    ),
    "input-size-huge": (
        _set("preprocessing", "input_size", value=10**9),
        "'preprocessing.input_size'",
    ),
    "mean-2": (_set("preprocessing", "mean", value=[0.5, 0.5]), "'preprocessing.mean'"),
    "std-0": (_set("preprocessing", "std", value=[0.2, 0, 0.2]), "'preprocessing.std'"),
    "interpolation": (
        _set("preprocessing", "interpolation", value="lanczos9"),
        "'preprocessing.interpolation'",
    ),
    "mask": (_set("preprocessing", "mask", value=[[0.5, 0.5, 0.1, 0.1]]), "'preprocessing.mask'"),
    "classifier-options": (_set("classifier", "options", value=[1]), "'classifier.options'"),
    "classifier-name": (_set("classifier", "name", value=""), "'classifier.name'"),
    "backbone": (_set("backbone", value="timm/resnet18"), "'backbone'"),
    "n-train": (_set("n_train", value=5), "'n_train'"),
    "kind": (_set("kind", value="pickle"), "'kind'"),
}


@pytest.mark.parametrize("edit", sorted(MALFORMED))
def test_sealed_but_malformed_metadata_names_the_key(pipeline, images, tmp_path, capsys, edit):
    change, key = MALFORMED[edit]
    bad = _edit(pipeline, tmp_path / f"{edit}.lbmodel", change, reseal=True)
    line = _refused(capsys, bad, images, "has malformed metadata")
    assert key in line


def test_no_classifier_or_preprocessing_is_refused_naming_the_key(
    pipeline, images, tmp_path, capsys
):
    bad = _edit(pipeline, tmp_path / "noclf.lbmodel", lambda m: m.pop("classifier"), reseal=True)
    assert "'classifier' needed to predict" in _refused(capsys, bad, images, "lacks")


def test_save_refuses_metadata_it_could_not_read_back(tmp_path):
    meta = {"kind": "finetune", "classes": ["a", "a"], "positive": "a"}
    with pytest.raises(ValueError, match="'classes'"):
        save_model_file(tmp_path / "m.safetensors", {}, meta)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="'classes'"):  # 3 names, labels of 2
        save_feature_pipeline(
            tmp_path / "p.lbmodel",
            *("t", {}, "c", {}, [[0.0], [1.0]], [0, 1], ["a", "b", "c"], "a"),
            {"input_size": 8, "mean": [0.5] * 3, "std": [0.2] * 3},
        )


# -- files of the previous schema (written before the metadata was checksummed) --------------
def _legacy(meta: dict) -> None:
    meta["schema"] = SCHEMA
    meta.pop(META_DIGEST_KEY)


def test_a_previous_schema_file_still_predicts_the_same_with_a_warning(
    pipeline, images, tmp_path, capsys
):
    old = _edit(pipeline, tmp_path / "old.lbmodel", _legacy)  # as the previous code wrote it
    want = _predict(capsys, pipeline, images)[1]
    code, out, err = _predict(capsys, old, images)
    assert code == 0 and out == want
    assert err.count("leukobench: warning:") == 1 and "older LeukoBench" in err
    with pytest.warns(LegacyModelFileWarning, match="old.lbmodel"):
        load_model_file(old)


def test_a_previous_schema_file_still_has_its_tensors_checked(pipeline, images, tmp_path, capsys):
    old = _edit(pipeline, tmp_path / "old.lbmodel", _legacy)
    data = bytearray(old.read_bytes())
    data[-3] ^= 0x01  # inside the last tensor's bytes
    old.write_bytes(bytes(data))
    _refused(capsys, old, images, "its tensors do not match their checksum")


@pytest.mark.parametrize("edit", ["classes-str", "classes-3", "input-size-str", "mask"])
def test_a_previous_schema_file_is_still_validated(pipeline, images, tmp_path, capsys, edit):
    change, key = MALFORMED[edit]

    def both(meta: dict) -> None:
        _legacy(meta)
        change(meta)

    old = _edit(pipeline, tmp_path / "old.lbmodel", both)
    assert key in _refused(capsys, old, images, "has malformed metadata")


def test_unknown_schema_is_refused(pipeline, images, tmp_path, capsys):
    bad = _edit(pipeline, tmp_path / "s9.lbmodel", _set("schema", value="leukobench.checkpoint/9"))
    assert MODEL_SCHEMA in _refused(capsys, bad, images, "has schema", hint="this LeukoBench reads")


def test_a_model_named_by_its_run_is_checked_against_the_record(pipeline, images, tmp_path, capsys):
    results = tmp_path / "r"
    shutil.copytree(pipeline.parents[2], results)
    run_id = pipeline.parent.name
    argv = ["predict", "--model", run_id, "--results-dir", str(results), str(images)]
    assert main(argv) == 0
    capsys.readouterr()
    model = results / "models" / run_id / pipeline.name
    _edit(pipeline, model, _swap, reseal=True)  # sealed again, but not the file the run saved
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match its sha256" in err[0] and "save_model" in err[0]


def test_a_folder_is_not_a_model_file(images, tmp_path, capsys):
    assert "is a folder, not a model file" in _refused(
        capsys, images, images, "model file", hint="folder"
    )
