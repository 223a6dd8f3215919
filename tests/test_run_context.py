"""One run context: picklable detached form, one cache root, errors before any work."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from bench.cli import main
from bench.data.prepare import prepare_data
from bench.protocols.context import CacheRoot, ContextSpec, RunContext
from bench.registry import get_registry
from bench.runner import run_suite
from bench.suite import load_suite

SUITE = """
[suite]
name = "ctx"
[data]
dataset = "synthetic"
options = {{ n_per_class = 6, size = 64 }}
[[protocol]]
kind = "features"
backbones = ["timm/resnet18"]
classifiers = ["lda", "knn1"]
folds = 2
[[protocol]]
kind = "finetune"
backbones = ["timm/resnet18"]
holdout = 0.34
settings = {{ epochs = 1, batch_size = 4 {extra} }}
[backbone."timm/resnet18"]
weights = "none"
"""


def _suite(tmp_path, extra: str = "", name: str = "ctx.toml"):
    path = tmp_path / name
    path.write_text(SUITE.format(extra=extra))
    return path


def test_context_detaches_pickles_and_reopens_with_empty_memos(tmp_path):
    registry = get_registry()
    suite = load_suite(str(_suite(tmp_path)), registry=registry)
    cache = CacheRoot(tmp_path / "cache")
    with cache.activate():
        data = prepare_data(suite, registry, cache_dir=cache.path)
    ctx = RunContext(suite=suite, registry=registry, data=data, device="cpu", cache=cache)
    samples = ctx.samples(True, 0)
    splits, info = ctx.splits(samples, suite.protocols[0], 0)
    assert info.kind == "grouped-kfold" and len(splits) == 2
    ctx.backbone("timm/resnet18")
    spec = ctx.detach()
    assert isinstance(spec, ContextSpec)
    back = pickle.loads(pickle.dumps(spec))
    assert back.suite.digest() == suite.digest() and back.data.digests == data.digests
    assert back.cache == cache and back.device == "cpu"
    reopened = back.open(registry)
    assert reopened.backbones == {} and reopened.feature_memo == {}
    again, info2 = reopened.splits(reopened.samples(True, 0), suite.protocols[0], 0)
    assert info2 == info
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again, strict=True))
    # pickling the context itself ships its detached form (memos stay behind)
    clone = pickle.loads(pickle.dumps(ctx))
    assert isinstance(clone, RunContext) and clone.backbones == {}
    assert clone.run_dir("x") == ctx.run_dir("x")


def test_run_suite_puts_everything_under_cache_dir(tmp_path, monkeypatch):
    other = tmp_path / "env-cache"
    monkeypatch.setenv("LEUKOBENCH_CACHE", str(other))
    registry = get_registry()
    suite = load_suite(str(_suite(tmp_path)), registry=registry)
    cache = tmp_path / "explicit"
    record, _ = run_suite(
        suite, registry=registry, results_dir=tmp_path / "r", cache_dir=cache, progress=False
    )
    assert record["status"] == "complete" and len(record["cells"]) == 3
    assert {p.name for p in cache.iterdir()} >= {
        "features",
        "predictions",
        "runs",
        "validated",
        "synthetic",
    }
    assert not other.exists(), sorted(str(p) for p in other.rglob("*"))


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        (", epoch = 2", r"protocol\[1\]\.settings\.epoch: unknown key; did you mean 'epochs'"),
        (", lr = nan", r"protocol\[1\]\.settings\.lr: nan is not a finite number"),
        (", lr = 1e300", r"protocol\[1\]\.settings\.lr: 1e\+300 is out of range"),
        (", momentum = 1.5", r"protocol\[1\]\.settings\.momentum: 1\.5 is out of range"),
        (', optimizer = "sgdn"', r"protocol\[1\]\.settings\.optimizer: .*did you mean .*'sgdm'"),
    ],
)
def test_bad_settings_exit_2_before_any_image_and_leave_no_record(tmp_path, capsys, extra, where):
    import re

    suite = _suite(tmp_path, extra)
    code = main(["run", str(suite), "--results-dir", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and re.search(where, err) and "ctx.toml" in err, err
    assert not list((tmp_path / "r").glob("*.json"))  # no result record (the folder may be checked)
    assert not list(tmp_path.rglob("validated"))  # no image was looked at


@pytest.mark.parametrize(
    "backbone_table",
    [
        '[backbone."timm/resnet18"]\nweights = "imagenet"\n',  # weights not on disk
        "",  # plus an unknown timm model below
    ],
)
def test_error_before_work_leaves_no_record(tmp_path, capsys, monkeypatch, backbone_table):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    text = SUITE.format(extra="").split('[backbone."timm/resnet18"]')[0] + backbone_table
    if not backbone_table:
        text = text.replace("timm/resnet18", "timm/resnet_nope")
    suite = tmp_path / "s.toml"
    suite.write_text(text)
    code = main(["run", str(suite), "--results-dir", str(tmp_path / "r"), "--no-progress"])
    assert code == 2, capsys.readouterr()
    assert not list((tmp_path / "r").glob("*.json"))
    assert main(["run", str(suite), "--dry-run"]) == 2


def test_unknown_executor_exits_2_with_suggestion(tmp_path, capsys):
    code = main(["run", str(_suite(tmp_path)), "--executor", "locl", "--dry-run"])
    assert code == 2 and "did you mean 'local'" in capsys.readouterr().err
    path = _suite(tmp_path)
    path.write_text(path.read_text().replace("[suite]", '[run]\nexecutor = "rayy"\n[suite]'))
    assert main(["run", str(path), "--dry-run"]) == 2
    assert "run.executor: unknown executor 'rayy'" in capsys.readouterr().err


def test_executor_key_does_not_change_the_digest(tmp_path):
    registry = get_registry()
    plain = load_suite(str(_suite(tmp_path)), registry=registry)
    path = _suite(tmp_path, name="b.toml")
    path.write_text(path.read_text().replace("[suite]", '[run]\nexecutor = "local"\n[suite]'))
    assert load_suite(str(path), registry=registry).digest() == plain.digest()
    assert json.dumps(plain.config, sort_keys=True)  # plain JSON (digested)


def test_saved_models_live_under_the_run_id_and_are_named_in_the_record(tmp_path, capsys):
    suite = _suite(tmp_path)
    results = tmp_path / "r"
    args = ["run", str(suite), "--results-dir", str(results), "--no-progress"]
    args += ["--set", "protocol.0.save_model=true", "--set", "protocol.1.save_model=true"]
    assert main(args) == 0
    assert main(args) == 0  # a second run never overwrites the first one's models
    capsys.readouterr()
    records = sorted(results.glob("*.json"))
    assert len(records) == 2 and records[0].stem != records[1].stem
    for path in records:
        record = json.loads(path.read_text())
        models = [m for c in record["cells"] for m in c["models"]]
        assert len(models) == 3 and {m["fold"] for m in models} == {None, 0}
        for m in models:
            assert m["path"].startswith(f"models/{path.stem}/")
            assert (results / m["path"]).is_file() and len(m["sha256"]) == 64
    run_id = records[0].stem
    images = tmp_path / "imgs"
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 80, 90)).save(images / "a.png")
    cell = "features|timm/resnet18|lda|seed=0|p0"
    base = ["predict", "--results-dir", str(results), str(images), "--format", "json"]
    assert main(["predict", "--model", f"{run_id}:{cell}", *base[1:]]) == 0
    assert "a.png" in capsys.readouterr().out
    assert main(["predict", "--model", run_id, *base[1:]]) == 2  # several: the error lists them
    assert f"{run_id}:{cell}" in capsys.readouterr().err


ONE_PASS = """
[suite]
name = "one-pass"
{seeds}
[data]
dataset = "synthetic"
options = {{ n_per_class = 6, size = 64 }}
{augment}
[[protocol]]
kind = "features"
backbones = {backbones}
classifiers = ["lda"]
folds = 2
[backbone."timm/resnet18"]
weights = "none"
{second}"""
SECOND = '[backbone."timm/test_resnet"]\nweights = "none"\n'


def _context(tmp_path, text: str) -> RunContext:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    registry = get_registry()
    suite = load_suite(str(path), registry=registry)
    cache = CacheRoot(tmp_path / "cache")
    with cache.activate():
        data = prepare_data(suite, registry, cache_dir=cache.path)
    return RunContext(suite=suite, registry=registry, data=data, device="cpu", cache=cache)


@pytest.mark.parametrize(
    ("backbones", "augment", "seeds", "kept"),
    [
        ('["timm/resnet18"]', "", "", False),  # one pass over each image: nothing held
        ('["timm/resnet18", "timm/test_resnet"]', "", "", True),  # a second backbone
        ('["timm/resnet18"]', '[augment]\nscheme = "loey2020"\ncopies = 3', "", True),  # copies
        ('["timm/resnet18"]', "", "seeds = [0, 1]", True),  # a second seed
    ],
)
def test_decoded_images_are_held_only_when_some_image_is_read_again(
    tmp_path, backbones, augment, seeds, kept
):
    second = SECOND if "test_resnet" in backbones else ""
    text = ONE_PASS.format(backbones=backbones, augment=augment, seeds=seeds, second=second)
    ctx = _context(tmp_path, text)
    assert (ctx.decoded is not None) is kept
    samples = ctx.samples(True, 0)
    features = ctx.features("timm/resnet18", samples, True, 0)
    assert features.shape[0] == len(samples)
    assert (len(ctx.decoded) > 0) if kept else ctx.decoded is None


def test_a_finetune_table_keeps_the_memo(tmp_path):
    ctx = _context(tmp_path, SUITE.format(extra=""))  # features + finetune (epochs reread)
    assert ctx.decoded is not None


def test_jobs_ask_for_the_cores_they_use(tmp_path):
    from bench.device import cpu_threads

    text = ONE_PASS.format(backbones='["timm/resnet18"]', augment="", seeds="", second="")
    ctx = _context(tmp_path, text)
    table = ctx.suite.protocols[0]
    protocol = ctx.protocol("features")
    jobs = protocol.jobs(ctx, table, 0, 0, protocol.cells(table, 0, 0))
    extract, fit = jobs[0], jobs[1]
    assert extract.kind == "extract" and extract.resources.cpus == cpu_threads()
    assert extract.resources.gpus == 0
    assert fit.kind == "fit" and fit.resources.cpus == ctx.suite.config["run"]["n_jobs"] == 2
    ctx.device = "cuda"
    assert ctx.network_resources().gpus == 1 and ctx.network_resources().cpus == 1
