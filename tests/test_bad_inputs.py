"""Bad inputs, tried as a user would: the CLI in a subprocess (``python -m bench``).

Every case must end with exit 2 and one line naming the file or key -- never a
traceback, never "internal error". Cases that are not errors (a skipped input,
a warning) say what was skipped and why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
LONG = "x" * 300
BAD_NAME = os.fsdecode(b"bad\xffname.png")  # not UTF-8 (shown as bad\xffname.png)
RECORD = next(iter(sorted((REPO / "results").glob("2026*.json"))), None)


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> Path:
    """A folder of bad (and some good) inputs, built once for the module."""
    root = tmp_path_factory.mktemp("bad-inputs")
    rng = np.random.default_rng(0)
    data = root / "data"
    for cls in ("healthy", "leukemia"):
        (data / cls).mkdir(parents=True)
        for i in range(4):
            img = (rng.random((48, 48, 3)) * 255).astype(np.uint8)
            Image.fromarray(img).save(data / cls / f"img{i}.png")
    (root / "file.txt").write_text("a file, not a folder")
    (root / "bad.pth").write_bytes(b"PK\x03\x04 not really a torch file")
    (root / "empty.json").write_text("")
    (root / "tiny.toml").write_text(
        '[suite]\nname = "tiny"\n[data]\ndataset = "imagefolder"\npath = "data"\n'
        '[[protocol]]\nkind = "features"\nbackbones = ["efficientnet_lite0"]\n'
        'classifiers = ["lda"]\nfolds = 2\n'
    )
    tiny = (root / "tiny.toml").read_text()
    (root / "bigseed.toml").write_text(tiny.replace('name = "tiny"', 'name = "t"\nseed = 2e10'))
    (root / "hugeseed.toml").write_text(
        tiny.replace('name = "tiny"', 'name = "t"\nseed = 99999999999999999999')
    )
    (root / "nanopts.toml").write_text(
        tiny.replace('path = "data"', 'path = "data"\noptions = { positive = nan }')
    )
    (root / "unused.toml").write_text(tiny + '\n[backbone.alexnet]\nlayer = "fc6"\n')
    for name in ("d_dangling", "d_loop", "d_badname"):
        shutil.copytree(data, root / name)
    os.symlink("/nonexistent-leukobench-dir", root / "d_dangling/healthy/sub")
    os.symlink("l2", root / "d_loop/healthy/l1")
    os.symlink("l1", root / "d_loop/healthy/l2")
    (root / "d_badname/healthy" / BAD_NAME).write_bytes(b"not an image")
    bad = root / "d_bad"
    for cls in ("healthy", "leukemia"):
        (bad / cls).mkdir(parents=True)
        for i in range(2):
            (bad / cls / f"x{i}.png").write_bytes(b"not an image")
    # predict inputs: a good image, a symbolic-link loop, a dangling link, a 100-Mpx image
    pin = root / "pin"
    pin.mkdir()
    shutil.copy(data / "healthy/img1.png", pin / "ok.png")
    os.symlink("b.png", pin / "a.png")
    os.symlink("a.png", pin / "b.png")
    os.symlink("/nonexistent-leukobench.png", pin / "dangling.png")
    Image.new("L", (10_000, 10_000)).save(root / "huge.png")
    _model_files(root)
    if RECORD is not None:
        shutil.copy(RECORD, root / "good.json")
        (root / "records").mkdir()
        shutil.copy(RECORD, root / "records" / "good.json")
    return root


def _model_files(root: Path) -> None:
    """A real Model 1 pipeline (EfficientNet-Lite0 + LDA) and a bit-flipped copy."""
    from bench.checkpoint import save_feature_pipeline
    from bench.registry import get_registry

    bb = get_registry().build_backbone("efficientnet_lite0")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20, 1280)).astype(np.float32)
    y = np.array([0, 1] * 10)
    path = save_feature_pipeline(
        root / "model.safetensors",
        "efficientnet_lite0",
        {},
        "lda",
        {},
        X,
        y,
        ["healthy", "leukemia"],
        "leukemia",
        bb.preprocessing(),
        backbone_info={"weights_digest": bb.weights_digest},
    )
    data = bytearray(path.read_bytes())
    at = bytes(data).index(X[7, :4].tobytes())
    data[at + 2] ^= 0x01  # one bit inside the stored training features
    (root / "flipped.safetensors").write_bytes(bytes(data))


def leukobench(cwd: Path, *argv: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LEUKOBENCH_CACHE": str(cwd / ".cache")}
    env.pop("LEUKOBENCH_DEBUG", None)
    env.pop("COLUMNS", None)
    return subprocess.run(
        [sys.executable, "-m", "bench", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=timeout,
    )


def _err(proc: subprocess.CompletedProcess) -> str:
    return proc.stderr.decode("utf-8", "backslashreplace")


def assert_clear_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    err = _err(proc)
    assert "Traceback" not in err and "internal error" not in err, err
    assert proc.returncode == 2, err
    assert needle in err, err


# (id, argv, what the one error line must name)
CASES = [
    # --set and suite values
    ("set-misspelt-table", ["run", "--dry-run", "--set", "protocl.0.folds=3"], "'protocol'"),
    ("set-too-deep", ["run", "--dry-run", "--set", "protocol.0.folds.x=3"], "protocol.0.folds"),
    ("set-into-string", ["run", "--dry-run", "--set", "suite.name.x=1"], "suite.name"),
    ("set-empty-key", ["run", "--dry-run", "--set", "protocol..folds=3"], "empty key"),
    ("set-list-index", ["run", "--dry-run", "--set", "protocol.7.folds=3"], "'7'"),
    ("set-nan", ["run", "--dry-run", "--set", "run.workers=nan"], "run.workers=nan"),
    ("set-inf-setting", ["run", "--dry-run", "--set", "protocol.0.settings.lr=inf"], "lr=inf"),
    ("set-nan-holdout", ["run", "--dry-run", "--set", "protocol.0.holdout=nan"], "holdout"),
    ("max-pixels-0", ["run", "--dry-run", "--set", "data.max_pixels=0"], "data.max_pixels"),
    ("batch-huge", ["run", "--dry-run", "--set", "run.batch_size=10000000000"], "run.batch_size"),
    ("workers-huge", ["run", "--dry-run", "--set", "run.workers=1000000"], "run.workers"),
    ("n-jobs-negative", ["run", "--dry-run", "--set", "run.n_jobs=-5"], "run.n_jobs"),
    ("seed-negative", ["run", "--dry-run", "--set", "suite.seed=-1"], "suite.seeds"),
    ("seed-float", ["run", "bigseed.toml", "--dry-run"], "suite.seed"),
    ("seed-huge", ["run", "hugeseed.toml", "--dry-run"], "suite.seeds"),
    (
        "copies-huge",
        ["run", "--dry-run", "--set", "augment.scheme=loey2020", "--set", "augment.copies=100000"],
        "augment.copies",
    ),  # fmt: skip
    ("data-options-nan", ["run", "nanopts.toml", "--dry-run"], "data.options.positive"),
    # backbones checked before any work
    (
        "timm-unknown",
        ["run", "--dry-run", "--set", "protocol.0.backbones=['timm/resnet_18']"],
        "timm/resnet18",
    ),  # fmt: skip
    (
        "layer-unknown",
        ["run", "--dry-run", "--set", "backbone.efficientnet_lite0.layer=fc9"],
        "fc9",
    ),  # fmt: skip
    (
        "option-misspelt",
        ["run", "--dry-run", "--set", "backbone.efficientnet_lite0.laer=x"],
        "laer",
    ),  # fmt: skip
    (
        "weights-missing",
        ["run", "--dry-run", "--set", "backbone.efficientnet_lite0.weights='/nope/w.pth'"],
        "/nope/w.pth",
    ),  # fmt: skip
    (
        "weights-corrupt",
        ["run", "--dry-run", "--set", "backbone.efficientnet_lite0.weights='bad.pth'"],
        "bad.pth (",
    ),  # fmt: skip
    (
        "weights-number",
        ["run", "--dry-run", "--set", "backbone.efficientnet_lite0.weights=5"],
        "weights",
    ),  # fmt: skip
    # datasets
    (
        "dangling-subfolder",
        ["run", "tiny.toml", "--data", "d_dangling", "--dry-run"],
        "d_dangling/healthy/sub",
    ),  # fmt: skip
    ("symlink-loop", ["run", "tiny.toml", "--data", "d_loop", "--dry-run"], "symbolic links"),
    ("non-utf8-bad-image", ["run", "tiny.toml", "--data", "d_badname"], "bad\\xffname.png"),
    ("all-bad-images", ["augment-preview", "d_bad", "--out", "p.png"], "d_bad/"),
    # where results go
    ("results-under-file", ["run", "tiny.toml", "--results-dir", "file.txt/res"], "file.txt"),
    ("results-in-proc", ["run", "tiny.toml", "--results-dir", "/proc/leukobench-x"], "/proc/"),
    ("results-long-name", ["run", "tiny.toml", "--results-dir", LONG], "too long"),
    ("cache-under-file", ["run", "tiny.toml", "--cache-dir", "file.txt/c"], "file.txt"),
    ("cache-is-file", ["cache", "--cache-dir", "file.txt", "info"], "file.txt"),
    ("report-out-under-file", ["report", "good.json", "--out", "file.txt/r.md"], "file.txt"),
    ("report-out-proc", ["report", "good.json", "--out", "/proc/r.md"], "/proc/r.md"),
    ("report-out-long", ["report", "good.json", "--out", LONG + ".md"], "too long"),
    ("report-out-folder", ["report", "good.json", "--out", "data"], "is a folder"),
    ("report-figures-file", ["report", "good.json", "--figures", "file.txt"], "file.txt"),
    (
        "compare-out-under-file",
        ["compare", "good.json", "good.json", "--out", "file.txt/c.md"],
        "file.txt",
    ),  # fmt: skip
    (
        "compare-tolerance-nan",
        ["compare", "good.json", "good.json", "--tolerance", "nan"],
        "--tolerance",
    ),  # fmt: skip
    (
        "leaderboard-out-under-file",
        ["leaderboard", "records", "--out", "file.txt/l.md"],
        "file.txt",
    ),  # fmt: skip
    (
        "extract-out-under-file",
        [
            "extract",
            "--backbone",
            "efficientnet_lite0",
            "--data",
            "data",
            "--out",
            "file.txt/x.npz",
        ],
        "file.txt",
    ),  # fmt: skip
    (
        "extract-out-proc",
        ["extract", "--backbone", "efficientnet_lite0", "--data", "data", "--out", "/proc/x.npz"],
        "/proc/x.npz",
    ),  # fmt: skip
    (
        "extract-batch-huge",
        [
            "extract",
            "--backbone",
            "efficientnet_lite0",
            "--data",
            "data",
            "--batch-size",
            "1000000000000",
        ],
        "--batch-size",
    ),  # fmt: skip
    (
        "extract-workers-negative",
        ["extract", "--backbone", "efficientnet_lite0", "--data", "data", "--workers", "-5"],
        "--workers",
    ),  # fmt: skip
    # predict
    (
        "predict-bit-flip",
        ["predict", "--model", "flipped.safetensors", "data"],
        "flipped.safetensors is corrupt",
    ),  # fmt: skip
    (
        "predict-device-bogus",
        ["predict", "--model", "model.safetensors", "--device", "bogus", "data"],
        "bogus",
    ),  # fmt: skip
    (
        "predict-out-folder",
        ["predict", "--model", "model.safetensors", "data", "--out", "data"],
        "is a folder",
    ),  # fmt: skip
    (
        "predict-out-under-file",
        ["predict", "--model", "model.safetensors", "data", "--out", "file.txt/p.csv"],
        "file.txt",
    ),  # fmt: skip
    (
        "predict-batch-0",
        ["predict", "--model", "model.safetensors", "--batch-size", "0", "data"],
        "--batch-size",
    ),  # fmt: skip
    (
        "predict-max-pixels-0",
        ["predict", "--model", "model.safetensors", "--max-pixels", "0", "data"],
        "--max-pixels",
    ),  # fmt: skip
    # augment-preview
    ("preview-out-type", ["augment-preview", "data", "--out", "grid.xyz"], "'.xyz'"),
    (
        "preview-out-under-file",
        ["augment-preview", "data", "--out", "file.txt/g.png"],
        "file.txt",
    ),  # fmt: skip
    ("preview-size-0", ["augment-preview", "data", "--size", "0", "--out", "g.png"], "--size"),
    (
        "preview-seed-negative",
        ["augment-preview", "data", "--seed", "-1", "--out", "g.png"],
        "--seed",
    ),  # fmt: skip
]


@pytest.fixture(scope="module")
def outcomes(fx) -> dict[str, subprocess.CompletedProcess]:
    """Every case's process, run a few at a time (each one is a fresh interpreter)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        futures = {case: pool.submit(leukobench, fx, *argv) for case, argv, _ in CASES}
        return {case: f.result() for case, f in futures.items()}


@pytest.mark.parametrize("case, needle", [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_error(outcomes, case, needle):
    argv = next(c[1] for c in CASES if c[0] == case)
    if "good.json" in argv and RECORD is None:
        pytest.skip("no committed result record to use")
    assert_clear_error(outcomes[case], needle)


def test_predict_lists_every_skipped_input_with_its_reason(fx):
    proc = leukobench(fx, "predict", "--model", "model.safetensors", "pin", "huge.png",
                      "--format", "csv")  # fmt: skip
    err = _err(proc)
    assert proc.returncode == 0 and "Traceback" not in err and "Warning" not in err, err
    assert [r.split(",")[0] for r in proc.stdout.decode().splitlines()[1:]] == ["pin/ok.png"]
    assert "4 input(s) skipped" in err
    assert "pin/a.png: symbolic link loop" in err and "pin/b.png: symbolic link loop" in err
    assert "pin/dangling.png: broken symbolic link" in err
    assert "huge.png: cannot read image: ValueError: image too large: 100000000 pixels" in err


def test_unused_backbone_options_are_a_warning_naming_the_table(fx):
    proc = leukobench(fx, "run", "unused.toml", "--dry-run")
    err = _err(proc)
    assert proc.returncode == 0, err
    assert "leukobench: warning:" in err and "[backbone.alexnet]" in err
    assert "no protocol uses backbone 'alexnet'" in err


def test_help_prints_percent_signs_once():
    from bench.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and "run" in a.choices)
    for name, sub in subparsers.choices.items():
        assert "%%" not in sub.format_help(), name
    assert "95% CI" in subparsers.choices["report"].format_help()


def test_tables_are_not_squeezed_when_stdout_is_a_pipe(fx):
    proc = leukobench(fx, "list", "backbones")
    lines = proc.stdout.decode().splitlines()
    assert proc.returncode == 0 and max(len(line) for line in lines) > 100
    assert not any(line.rstrip().endswith("…") for line in lines)


@pytest.mark.slow
def test_corrupt_prediction_cache_entry_is_recomputed_on_rerun(fx, tmp_path):
    run = ("run", "tiny.toml", "--results-dir", str(tmp_path), "--no-progress")
    first = leukobench(fx, *run)
    assert first.returncode == 0, _err(first)
    entries = list((fx / ".cache" / "predictions").glob("*/*.npz"))
    assert entries
    for entry in entries:
        entry.write_bytes(entry.read_bytes()[:100])  # truncated
    second = leukobench(fx, *run)
    err = _err(second)
    assert second.returncode == 0 and "BadZipFile" in err and "corrupt" in err, err
    assert err.count("leukobench: warning: Model 1 prediction cache entry") == len(entries)
    third = leukobench(fx, *run)
    assert "warning" not in _err(third)  # recomputed and stored again
    records = sorted(tmp_path.glob("*.json"))
    metrics = [
        [c["metrics"]["pooled"] for c in json.loads(r.read_text())["cells"]] for r in records
    ]
    assert len(records) == 3 and metrics[0] == metrics[1] == metrics[2]
