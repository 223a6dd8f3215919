"""The whole product: CLI, the offline quickstart, and a throwaway plugin through a real run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestCentroid

from bench.backbone import Backbone
from bench.cli import main
from bench.errors import UnknownNameError
from bench.hookspecs import hookimpl
from bench.registry import get_registry
from bench.results import load_record
from bench.runner import run_suite
from bench.specs import BackboneSpec, ClassifierSpec
from bench.suite import load_suite


def _record(results: Path) -> dict:
    files = sorted(results.glob("*.json"))
    assert len(files) == 1, files
    return load_record(files[0])


@pytest.mark.slow
def test_quickstart_runs_end_to_end(tmp_path, capsys):
    """`leukobench run` (small size): real EfficientNet-Lite0 weights on synthetic smears."""
    code = main(
        [
            "run",
            "--results-dir",
            str(tmp_path),
            "--no-progress",
            "--set",
            "data.options.n_per_class=12",
            "--set",
            "protocol.0.folds=3",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "Table 1" in out and "Specificity" in out
    record = _record(tmp_path)
    assert record["status"] == "complete"
    assert record["dataset"]["synthetic"] is True
    assert record["dataset"]["n_images"] == 24
    cells = {c["classifier"]: c for c in record["cells"]}
    assert set(cells) == {"dt", "lda", "svm-linear", "svm-gaussian", "svm-cubic", "knn1"}
    info = cells["knn1"]["backbone_info"]
    assert info["pretrained"] is True and info["feature_dim"] == 1280
    # Real ImageNet features separate the two synthetic cell types well.
    assert cells["svm-linear"]["metrics"]["pooled"]["accuracy"] >= 0.8
    # Every prediction is stored: each image is tested exactly once across folds.
    tested = sorted(i for f in cells["knn1"]["folds"] for i in f["test_index"])
    assert tested == list(range(24))

    # A second run decodes and forwards nothing: all features come from the cache.
    code = main(
        [
            "run",
            "--results-dir",
            str(tmp_path / "again"),
            "--no-progress",
            "--set",
            "data.options.n_per_class=12",
            "--set",
            "protocol.0.folds=3",
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "24 from cache, 0 computed" in err
    # ... and refits nothing: every classifier's fold predictions come from the cache.
    again = _record(tmp_path / "again")
    assert all(c["predictions_from_cache"] for c in again["cells"])
    first = {c["classifier"]: c["folds"] for c in record["cells"]}
    assert all(c["folds"] == first[c["classifier"]] for c in again["cells"])


class ThrowawayPlugin:
    """A plugin object a stranger could write: a colour-statistics backbone and a classifier."""

    @hookimpl
    def leukobench_backbones(self):
        def factory(weights: str = "none", **_: object) -> Backbone:
            class ColourStats(torch.nn.Module):
                def forward(self, x: torch.Tensor) -> torch.Tensor:
                    return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)

            def make_finetune(k: int) -> torch.nn.Module:
                return torch.nn.Sequential(ColourStats(), torch.nn.Linear(6, k))

            return Backbone(
                name="colour-stats",
                input_size=32,
                feature_dim=6,
                extractor=ColourStats().eval(),
                make_finetune=make_finetune,
                weights="none",
                weights_digest="none",
                pretrained=False,
                head_module="1",
            )

        return BackboneSpec(
            name="colour-stats", factory=factory, description="mean/std per channel"
        )

    @hookimpl
    def leukobench_classifiers(self):
        return ClassifierSpec(
            name="centroid", factory=NearestCentroid, paper_label="Nearest centroid"
        )


def test_throwaway_plugin_runs_in_a_suite(tmp_path):
    registry = get_registry()
    registry.register(ThrowawayPlugin(), name="throwaway")
    try:
        suite_file = tmp_path / "tiny.toml"
        suite_file.write_text(
            """
[suite]
name = "tiny"
[data]
dataset = "synthetic"
options = { n_per_class = 8, size = 64 }
[[protocol]]
kind = "features"
backbones = ["colour-stats"]
classifiers = ["centroid", "knn1"]
folds = 2
"""
        )
        suite = load_suite(str(suite_file), registry=registry)
        record, path = run_suite(
            suite, registry=registry, results_dir=tmp_path / "r", progress=False
        )
        assert path.exists()
        assert {c["classifier"] for c in record["cells"]} == {"centroid", "knn1"}
        assert all(c["backbone"] == "colour-stats" for c in record["cells"])
        assert record["cells"][0]["backbone_info"]["pretrained"] is False
        saved = json.loads(path.read_text())
        assert saved["status"] == "complete"
    finally:
        registry.unregister("throwaway")
    with pytest.raises(UnknownNameError):
        registry.backbone("colour-stats")


def test_a_cache_folder_that_is_a_file_is_named_before_any_work(tmp_path, capsys, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("LEUKOBENCH_CACHE", str(afile))
    for argv in (["cache", "info"], ["run", "--dry-run"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "$LEUKOBENCH_CACHE" in err and "is a file, not a folder" in err, err


def test_usage_errors_are_one_line_pointing_at_help(capsys):
    for argv, needle in (
        (["report"], "leukobench report: error: the following arguments are required"),
        (["list", "nope"], "invalid choice: 'nope'"),
        (["run", "--bogus"], "unrecognized arguments: --bogus"),
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and needle in err and "--help)" in err
        assert len(err.strip().splitlines()) == 1, err  # no usage block


def test_cli_version_and_list(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert "leukobench" in capsys.readouterr().out
    assert main(["list", "backbones"]) == 0
    out = capsys.readouterr().out
    assert "alexnet" in out and "efficientnet_lite0" in out and "4096" in out
    assert main(["list", "suites"]) == 0
    assert "loey2020-grouped" in capsys.readouterr().out
    assert main(["list", "trackers"]) == 0
    out = capsys.readouterr().out
    assert "mlflow" in out and "tensorboard" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "quikstart"], "unknown suite 'quikstart'; did you mean 'quickstart'?"),
        (["run", "loey2020"], "needs a folder or file: pass --data PATH"),
        (["run", "loey2020", "--data", "/no/such/dir"], "does not exist"),
        (["run", "--data", "/tmp", "--dry-run"], "'synthetic' draws its own images"),
        (["run", "--set", "protocol.0.folds=one"], "expected an integer"),
    ],
)
def test_cli_user_errors_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_cli_bad_images_exit_2_naming_the_file(tmp_path, capsys):
    from PIL import Image

    for c, cls in enumerate(("healthy", "leukemia")):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (40, 40), (i * 40, 90 + c, 200)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "leukemia" / "broken.jpg").write_bytes(b"")
    argv = [
        "run",
        "loey2020-grouped",
        "--data",
        str(tmp_path),
        "--set",
        "protocol=[{kind='features', backbones=['efficientnet_lite0'], classifiers=['knn1'], folds=2}]",
        "--results-dir",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "--skip-bad" in err
    assert not list((tmp_path / "r").glob("*.json"))  # nothing ran, nothing half-written
    assert main([*argv, "--dry-run"]) == 2  # the dry run sees the same
    assert main([*argv, "--dry-run", "--skip-bad"]) == 0  # and takes the same flag
    assert "6 images" in capsys.readouterr().out


def test_features_are_float32_and_finite(tmp_path):
    registry = get_registry()
    registry.register(ThrowawayPlugin(), name="throwaway2")
    try:
        suite_file = tmp_path / "tiny.toml"
        suite_file.write_text(
            '[data]\ndataset = "synthetic"\noptions = { n_per_class = 6, size = 64 }\n'
            '[[protocol]]\nkind = "features"\nbackbones = ["colour-stats"]\nclassifiers = ["lda"]\nfolds = 2\n'
        )
        record, _ = run_suite(
            load_suite(str(suite_file), registry=registry),
            registry=registry,
            results_dir=tmp_path,
            progress=False,
        )
        scores = np.concatenate([f["score"] for f in record["cells"][0]["folds"]])
        assert np.isfinite(scores).all()
    finally:
        registry.unregister("throwaway2")


def test_dry_run_shows_plan_and_cache_state(tmp_path, capsys):
    argv = ["run", "--set", "data.options.n_per_class=6", "--set", "protocol.0.folds=2"]
    assert main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Plan (dry run" in out and "0 cached, 12 to extract" in out
    assert main([*argv, "--results-dir", str(tmp_path), "--no-progress"]) == 0
    capsys.readouterr()
    assert main([*argv, "--dry-run"]) == 0
    assert "12 cached, 0 to extract" in capsys.readouterr().out
    assert main([*argv, "--dry-run", "--no-cache"]) == 0  # as a run with --no-cache would
    assert "0 cached, 12 to extract" in capsys.readouterr().out


def test_dry_run_marks_leaky_split_and_missing_weights(tmp_path, capsys, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for cls in ("healthy", "leukemia"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (32, 32), (i * 20, 80 if cls == "healthy" else 160, 90)).save(
                tmp_path / "d" / cls / f"{i}.png"
            )
    # missing weights: the dry run is a CI preflight, so it fails (exit 2) naming the file
    assert main(["run", "loey2020", "--data", str(tmp_path / "d"), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "LEAKY" in captured.out and "alexnet-owt-7be5be79.pth" in captured.out
    assert "error: protocol[0] features alexnet: cannot build" in captured.err


def test_leaderboard_leaves_out_synthetic_runs_unless_asked(tmp_path, capsys):
    import shutil

    ref = Path(__file__).resolve().parents[1] / "results" / "reference" / "ci-reference.json"
    shutil.copy(ref, tmp_path / "ref.json")
    assert main(["leaderboard", str(tmp_path)]) == 0
    assert "efficientnet_lite0" not in capsys.readouterr().out
    assert main(["leaderboard", str(tmp_path), "--include-synthetic"]) == 0
    assert "efficientnet_lite0" in capsys.readouterr().out
