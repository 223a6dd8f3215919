"""`leukobench predict`: same preprocessing as training, bad files per file, both model kinds."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from test_finetune import register_tiny, run_tiny, tiny_backbone, tiny_samples

from bench.checkpoint import save_feature_pipeline, save_model_file
from bench.cli import main
from bench.extraction import Normaliser
from bench.hookspecs import hookimpl
from bench.predict import collect_images, load_predictor
from bench.specs import ClassifierSpec


class LogRegPlugin:
    @hookimpl
    def leukobench_classifiers(self) -> list[ClassifierSpec]:
        return [
            ClassifierSpec(
                name="test-logreg", factory=lambda **o: LogisticRegression(max_iter=500, **o)
            )
        ]


@pytest.fixture
def trained(tmp_path):
    """A tiny fine-tuned model (fold 0 of a 3-way split) and its result."""
    register_tiny()
    return run_tiny(tmp_path / "work", epochs=2)[0]


def _image_paths(indices):
    samples = tiny_samples()
    return [samples.imageset.paths[int(samples.source[i])] for i in indices]


def _json_out(capsys, argv):
    code = main(argv)
    out = capsys.readouterr()
    return code, json.loads(out.out) if out.out.strip() else None, out.err


def test_predict_matches_training_time_scores(trained, capsys):
    paths = _image_paths(trained.test_index)
    code, rows, _ = _json_out(
        capsys, ["predict", "--model", str(trained.best_path), *map(str, paths), "--format", "json"]
    )
    assert code == 0 and [r["path"] for r in rows] == [str(p) for p in paths]
    p_leuk = np.array([r["probabilities"]["leukemia"] for r in rows])
    assert np.allclose(p_leuk, trained.score, atol=1e-6)
    assert [r["class"] for r in rows] == [["healthy", "leukemia"][k] for k in trained.y_pred]


def test_directories_bad_and_missing_files(trained, tmp_path, capsys):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for i, p in enumerate(_image_paths([0, 7])):
        shutil.copy(p, folder / "sub" / f"cell{i}.PNG")
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    missing = tmp_path / "missing.jpg"
    code, rows, err = _json_out(
        capsys,
        [
            "predict",
            "--model",
            str(trained.last_path),
            str(folder),
            str(missing),
            "--format",
            "json",
        ],
    )
    assert code == 0
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == ["cell0.PNG", "cell1.PNG"]
    assert "3 input(s) skipped" in err  # every input is predicted or listed with its reason
    assert "broken.png: cannot read image" in err and "missing.jpg: no such file" in err
    assert "notes.txt: not an image file name" in err


def test_no_image_predicted_exits_2(trained, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG but truncated")
    assert main(["predict", "--model", str(trained.best_path), str(bad)]) == 2
    assert "no image could be predicted" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_table_and_csv_to_file(trained, tmp_path, capsys, fmt):
    out = tmp_path / f"pred.{fmt}"
    paths = _image_paths([0, 1, 2])
    code = main(
        [
            "predict",
            "--model",
            str(trained.best_path),
            *map(str, paths),
            "--format",
            fmt,
            "--out",
            str(out),
            "--batch-size",
            "2",
        ]
    )
    assert code == 0
    text = out.read_text().splitlines()
    assert "p(leukemia)" in text[0] and len(text) == 3 + (1 if fmt == "csv" else 2)
    assert "wrote 3 prediction(s)" in capsys.readouterr().err


def test_foreign_checkpoint_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"{}" * 10)
    assert main(["predict", "--model", str(bad), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors" in err and "corrupt or truncated" in err and "Traceback" not in err


def test_weights_that_do_not_fit_the_architecture(tmp_path, capsys):
    register_tiny()
    meta = {
        "kind": "finetune",
        "classes": ["healthy", "leukemia"],
        "positive": "leukemia",
        "backbone": {"name": "tiny", "options": {}},
        "preprocessing": tiny_backbone().preprocessing(),
    }
    import torch

    path = save_model_file(tmp_path / "m.safetensors", {"head.weight": torch.zeros(2, 16)}, meta)
    assert main(["predict", "--model", str(path), str(tmp_path)]) == 2
    assert "do not fit backbone 'tiny'" in capsys.readouterr().err


def test_collect_images_sorted_recursive(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ["b/2.jpg", "a.png", "b/1.TIFF", "c.txt"]:
        (tmp_path / name).write_bytes(b"x")
    paths, problems = collect_images([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["a.png", "b/1.TIFF", "b/2.jpg"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert collect_images([empty])[1][0][1].startswith("directory holds no images")


def test_feature_pipeline_predicts_like_its_classifier(tmp_path, capsys):
    from bench.registry import get_registry

    register_tiny()
    get_registry().register(LogRegPlugin(), name="logreg-test")
    backbone = tiny_backbone()
    samples = tiny_samples()
    imgs = np.stack([_decode(p, backbone) for p in samples.imageset.paths])
    import torch

    with torch.no_grad():
        feats = backbone.extractor(Normaliser(backbone.mean, backbone.std).training(imgs)).numpy()
    train, test = np.arange(0, 12, 2), np.arange(1, 12, 2)
    path = save_feature_pipeline(
        tmp_path / "pipe.safetensors",
        "tiny",
        {},
        "test-logreg",
        {"C": 10.0},
        feats[train],
        samples.labels[train],
        list(samples.imageset.classes),
        samples.imageset.positive,
        backbone.preprocessing(),
        backbone_info=backbone.describe(),
    )
    expected = LogisticRegression(max_iter=500, C=10.0).fit(feats[train], samples.labels[train])
    want = expected.predict_proba(feats[test])
    paths = [str(samples.imageset.paths[i]) for i in test]
    code, rows, _ = _json_out(capsys, ["predict", "--model", str(path), *paths, "--format", "json"])
    assert code == 0
    got = np.array([[r["probabilities"][c] for c in ("healthy", "leukemia")] for r in rows])
    assert np.allclose(got, want, atol=1e-6)


def test_feature_pipeline_refuses_other_weights(tmp_path):
    register_tiny()
    info = {**tiny_backbone().describe(), "weights_digest": "sha256:other"}
    path = save_feature_pipeline(
        tmp_path / "pipe.safetensors",
        "tiny",
        {},
        "logreg",
        {},
        np.zeros((2, 16)),
        np.array([0, 1]),
        ["healthy", "leukemia"],
        "leukemia",
        tiny_backbone().preprocessing(),
        backbone_info=info,
    )
    with pytest.raises(Exception, match="trained on features of weights sha256:other"):
        load_predictor(path)


def _decode(path, backbone):
    from bench.data.decode import decode_resized

    return decode_resized(path, backbone.input_size, backbone.interpolation)
