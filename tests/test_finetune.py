"""Model 2 fine-tuning: settings, determinism, resume after a kill, freezing, real data."""

from __future__ import annotations

import copy
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.backbone import Backbone
from bench.checkpoint import load_model_file, read_model_meta
from bench.data.imageset import ImageSet, Samples
from bench.errors import UnknownNameError, UserError
from bench.hookspecs import hookimpl
from bench.protocols import finetune as ft
from bench.protocols.finetune import FinetuneSettings, carve_validation, finetune_cv, training
from bench.specs import BackboneSpec

TESTS = Path(__file__).resolve().parent


# -- a tiny backbone, registered like any plugin (shared with test_predict/test_checkpoint) ----
def tiny_backbone(weights: str = "random", input_size: int = 32, **_: object) -> Backbone:
    """A 2-conv network; ``weights="none"`` and ``"random"`` give the same seeded init."""
    gen_state = torch.get_rng_state()
    torch.manual_seed(1234)
    body = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    torch.set_rng_state(gen_state)

    def make_finetune(k: int) -> nn.Module:
        return nn.Sequential(OrderedDict(body=copy.deepcopy(body), head=nn.Linear(16, k)))

    return Backbone(
        name="tiny",
        input_size=input_size,
        feature_dim=16,
        extractor=body.eval(),
        make_finetune=make_finetune,
        weights=weights,
        weights_digest="random:1234",
        pretrained=False,
        head_module="head",
    )


class TinyPlugin:
    @hookimpl
    def leukobench_backbones(self) -> list[BackboneSpec]:
        return [BackboneSpec(name="tiny", factory=tiny_backbone, description="test net")]


def register_tiny() -> None:
    from bench.registry import get_registry

    get_registry().register(TinyPlugin(), name="tiny-test")


def tiny_samples(n_per_class: int = 6) -> Samples:
    from plugins.synthetic import synthetic_dataset

    return Samples.originals(synthetic_dataset(n_per_class=n_per_class, size=64))


def simple_splits(n: int, k: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    idx = np.arange(n)
    return [(idx[idx % k != f], idx[idx % k == f]) for f in range(k)]


FAST = {"epochs": 3, "batch_size": 4, "lr": 0.05}


def run_tiny(workdir: Path, seed: int = 0, n_folds: int = 1, **options: object) -> list:
    samples = tiny_samples()
    settings = FinetuneSettings.from_options({**FAST, **options})
    splits = simple_splits(len(samples), 3)[:n_folds]
    return finetune_cv(
        samples,
        tiny_backbone,
        splits,
        settings,
        workdir=workdir,
        seed=seed,
        progress=False,
        backbone_options={"input_size": 32},
    )


# -- settings ------------------------------------------------------------------------------------
def test_defaults_are_the_papers():
    s = FinetuneSettings.from_options({})
    assert (s.batch_size, s.epochs, s.lr, s.optimizer, s.momentum) == (5, 6, 1e-4, "sgdm", 0.9)
    assert (s.train, s.augmentation, s.amp, s.device) == ("all", "premade", "none", "auto")


def test_unknown_setting_names_it_with_suggestion():
    with pytest.raises(UserError, match=r"'epoch'.*did you mean 'epochs'"):
        FinetuneSettings.from_options({"epoch": 3})


@pytest.mark.parametrize(
    "options, pattern",
    [
        ({"optimizer": "sgdn"}, r"'optimizer'.*did you mean.*'sgdm'"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "integer"),
        ({"channels_last": "yes"}, "true or false"),
        ({"patience": 2, "val_fraction": 0.0}, "val_fraction"),
        ({"amp": "fp8"}, "amp"),
    ],
)
def test_bad_settings_raise_user_error(options, pattern):
    with pytest.raises(UserError, match=pattern):
        FinetuneSettings.from_options(options)


def test_patience_defaults_val_fraction():
    s = FinetuneSettings.from_options({"patience": 2, "schedule": "Cosine"})
    assert s.val_fraction == 0.1 and s.schedule == "cosine"


# -- validation carve -----------------------------------------------------------------------
def test_carve_validation_is_grouped_and_from_train_only():
    labels = np.repeat([0, 1], 20)
    groups = np.array([f"g{i // 4}" for i in range(40)], dtype=object)
    train = np.arange(0, 32)
    fit, val = carve_validation(train, groups, labels, 0.25, seed=3)
    assert set(fit) | set(val) == set(train) and not set(fit) & set(val)
    assert not set(groups[fit]) & set(groups[val])
    assert set(labels[val]) == {0, 1}
    again = carve_validation(train, groups, labels, 0.25, seed=3)
    assert np.array_equal(again[1], val)


def test_build_optimizer_head_factor_and_freeze():
    bb = tiny_backbone()
    model = bb.make_finetune(2)
    s = FinetuneSettings(lr=0.01, head_lr_factor=10.0)
    opt = ft.build_optimizer(model, model.head, s, torch.device("cpu"))
    assert [g["lr"] for g in opt.param_groups] == [0.01, pytest.approx(0.1)]
    assert opt.param_groups[0]["momentum"] == 0.9
    frozen = bb.make_finetune(2)
    opt = ft.build_optimizer(
        frozen, frozen.head, FinetuneSettings(train="head"), torch.device("cpu")
    )
    assert len(opt.param_groups) == 1
    assert not any(p.requires_grad for p in frozen.body.parameters())


# -- training ----------------------------------------------------------------------------------
def test_finetune_is_deterministic_and_records_everything(tmp_path):
    a = run_tiny(tmp_path / "a", seed=7)[0]
    b = run_tiny(tmp_path / "b", seed=7)[0]
    c = run_tiny(tmp_path / "c", seed=8)[0]
    assert a.history == b.history and np.array_equal(a.score, b.score)
    assert a.history != c.history
    assert len(a.history) == 3 * (8 // 4)  # 8 training images, batch 4, 3 epochs
    assert set(a.history[0]) == {"epoch", "iteration", "loss", "accuracy", "lr"}
    assert a.y_true.shape == a.y_pred.shape == a.score.shape == (4,)
    assert np.all((a.score >= 0) & (a.score <= 1)) and a.images_per_s > 0
    ta, _ = load_model_file(a.last_path)
    tb, _ = load_model_file(b.last_path)
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    meta = read_model_meta(a.best_path)
    assert meta["classes"] == ["healthy", "leukemia"] and meta["positive"] == "leukemia"
    assert meta["backbone"]["name"] == "tiny" and meta["backbone"]["options"] == {"input_size": 32}
    assert meta["preprocessing"]["input_size"] == 32 and meta["settings"]["lr"] == 0.05
    assert "accuracy" in meta["metrics"] and meta["dataset_fingerprint"]


def test_training_reduces_loss(tmp_path):
    res = run_tiny(tmp_path, epochs=8, lr=0.1)[0]
    losses = np.array([h["loss"] for h in res.history])
    assert losses[-4:].mean() < losses[:2].mean() - 0.05


def test_head_only_training_keeps_body_frozen(tmp_path):
    res = run_tiny(tmp_path, train="head")[0]
    trained, _ = load_model_file(res.last_path)
    initial = tiny_backbone().make_finetune(2).state_dict()
    body_keys = [k for k in initial if k.startswith("body.")]
    assert all(torch.equal(trained[k], initial[k]) for k in body_keys)  # BN stats too (eval mode)
    assert not torch.equal(trained["head.weight"], initial["head.weight"])


def test_early_stopping_selects_best_from_validation(tmp_path):
    res = run_tiny(tmp_path, epochs=6, patience=1, val_fraction=0.3, lr=0.5)[0]
    assert res.selected == "best" and res.best_path != res.last_path
    assert len(res.val_history) == res.epochs_run
    losses = [v["val_loss"] for v in res.val_history]
    assert read_model_meta(res.best_path)["epoch"] == int(np.argmin(losses)) + 1


def test_finished_folds_are_not_trained_again(tmp_path):
    first = run_tiny(tmp_path, n_folds=2)
    again = run_tiny(tmp_path, n_folds=2)
    assert all(r.resumed for r in again)
    assert [r.history for r in again] == [r.history for r in first]
    other = run_tiny(tmp_path, n_folds=2, lr=0.04)  # different inputs: trained afresh
    assert not any(r.resumed for r in other)


def test_resume_after_interrupt_matches_uninterrupted(tmp_path, monkeypatch):
    whole = run_tiny(tmp_path / "whole", epochs=4, schedule="cosine")[0]
    real_save = training.save_training_state
    calls = []

    def save_then_die(path, state):
        real_save(path, state)
        calls.append(state["epoch"])
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_training_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_tiny(tmp_path / "killed", epochs=4, schedule="cosine")
    assert calls == [1, 2] and not (tmp_path / "killed/fold-00/result.json").exists()
    monkeypatch.setattr(training, "save_training_state", real_save)
    resumed = run_tiny(tmp_path / "killed", epochs=4, schedule="cosine")[0]
    assert resumed.resumed and resumed.history == whole.history
    assert np.array_equal(resumed.score, whole.score)
    ta, _ = load_model_file(whole.last_path)
    tb, _ = load_model_file(resumed.last_path)
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


_CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
import test_finetune as t
from bench.protocols.finetune import training
real = training.save_training_state
def slow_save(path, state):
    real(path, state)
    time.sleep(60)  # the parent kills us here, after epoch 1's state is on disk
training.save_training_state = slow_save
t.run_tiny(__import__("pathlib").Path({workdir!r}), epochs=3)
"""


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)]
)
def test_killed_process_resumes_to_same_result(tmp_path, sig):
    workdir = tmp_path / "run"
    script = _CHILD.format(tests=str(TESTS), workdir=str(workdir))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    child = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE)
    state = workdir / "fold-00" / "state.pt"
    deadline = time.monotonic() + 60
    while not state.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.exists(), child.stderr.read().decode() if child.poll() is not None else "timeout"
    child.send_signal(sig)
    assert child.wait(timeout=30) != 0
    assert not (workdir / "fold-00" / "result.json").exists()
    resumed = run_tiny(workdir, epochs=3)[0]
    whole = run_tiny(tmp_path / "whole", epochs=3)[0]
    assert resumed.resumed and resumed.history == whole.history
    assert np.array_equal(resumed.score, whole.score)


def test_unreadable_training_state_is_warned_about_and_trained_again(tmp_path, monkeypatch):
    from bench.feature_cache import CacheCorruptionWarning

    def die(path, state):
        path.write_bytes(b"garbage, not a torch file")  # as a truncated or foreign file
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_training_state", die)
    with pytest.raises(KeyboardInterrupt):
        run_tiny(tmp_path)
    monkeypatch.undo()
    with pytest.warns(CacheCorruptionWarning, match=r"state.pt.*trained again from its start"):
        res = run_tiny(tmp_path)[0]
    assert not res.resumed
    assert np.array_equal(res.score, run_tiny(tmp_path / "whole")[0].score)


def _damage_result(path, how):
    saved = json.loads(path.read_text())
    if how == "flip-prediction":  # one stored prediction changes: the checksum catches it
        saved["result"]["y_pred"][0] = 1 - saved["result"]["y_pred"][0]
        path.write_text(json.dumps(saved))
    elif how == "missing-field":  # and no checksum, as results before checksums
        del saved["result"]["y_pred"], saved["sha256"]
        path.write_text(json.dumps(saved))
    elif how == "short-scores":
        saved["result"]["score"] = saved["result"]["score"][:-1]
        del saved["sha256"]
        path.write_text(json.dumps(saved))
    else:
        path.write_text(path.read_text()[:100])  # truncated


@pytest.mark.parametrize("how", ["flip-prediction", "missing-field", "short-scores", "truncated"])
def test_a_damaged_fold_result_is_warned_about_and_trained_again(tmp_path, how):
    from bench.feature_cache import CacheCorruptionWarning

    first = run_tiny(tmp_path)[0]
    _damage_result(tmp_path / "fold-00" / "result.json", how)
    with pytest.warns(CacheCorruptionWarning, match="result.json is corrupt"):
        again = run_tiny(tmp_path)[0]
    assert not again.resumed and np.array_equal(again.y_pred, first.y_pred)
    assert run_tiny(tmp_path)[0].resumed  # stored again, intact


def test_a_moved_run_folder_names_its_own_model_files(tmp_path):
    import shutil

    run_tiny(tmp_path / "a")
    shutil.move(tmp_path / "a", tmp_path / "b")
    res = run_tiny(tmp_path / "b")[0]
    assert res.resumed and res.last_path.parent == tmp_path / "b" / "fold-00"
    assert res.last_path.is_file() and res.best_path.is_file()


def test_bad_image_is_reported_before_training(tmp_path):
    samples = tiny_samples()
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    s = samples.imageset
    imageset = ImageSet(
        name="t",
        paths=(*s.paths[:-1], bad),
        labels=s.labels,
        classes=s.classes,
        groups=s.groups,
        positive=s.positive,
    )
    with pytest.raises(UserError, match="broken.png"):
        finetune_cv(
            Samples.originals(imageset),
            tiny_backbone(),
            simple_splits(len(s), 2),
            FinetuneSettings(epochs=1),
            workdir=tmp_path / "w",
            progress=False,
        )


def test_unknown_device_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="finetune: setting 'device'.*unknown device 'tpu'"):
        run_tiny(tmp_path, device="tpu")


def test_shared_decode_memo_is_filled_then_reused(tmp_path, monkeypatch):
    import hashlib

    from bench.data import decode
    from bench.extraction import DecodedImages

    samples = tiny_samples()
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in samples.imageset.paths]
    memo = DecodedImages()
    calls = []
    real = decode.decode_resized

    def counting(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(decode, "decode_resized", counting)

    def run(workdir: Path) -> list:
        return finetune_cv(
            samples,
            tiny_backbone,
            simple_splits(len(samples), 3)[:1],
            FinetuneSettings.from_options({**FAST, "epochs": 1}),
            workdir=workdir,
            progress=False,
            decoded=memo,
            digests=digests,
        )

    first = run(tmp_path / "a")
    assert len(calls) == len(samples) and len(memo) == len(samples)
    second = run(tmp_path / "b")
    assert len(calls) == len(samples) and memo.hits == len(samples)
    assert second[0].history == first[0].history
    plain = run_tiny(tmp_path / "c", epochs=1)  # no memo: same training
    assert plain[0].history == first[0].history


def test_onthefly_augmentation_is_seeded(tmp_path):
    pytest.importorskip("bench.data.augment")
    a = run_tiny(tmp_path / "a", augmentation="onthefly")[0]
    b = run_tiny(tmp_path / "b", augmentation="onthefly")[0]
    plain = run_tiny(tmp_path / "c")[0]
    assert a.history == b.history and a.history != plain.history


def test_progress_output_runs(tmp_path, capsys):
    samples = tiny_samples()
    finetune_cv(
        samples,
        tiny_backbone(),
        simple_splits(len(samples), 3)[:1],
        FinetuneSettings(epochs=1, batch_size=4),
        workdir=tmp_path,
        progress=True,
    )


# -- real data ------------------------------------------------------------------------------
def _cnmc_imageset(root: Path) -> ImageSet:
    rows = list(csv.DictReader((root / "labels.csv").open()))
    classes = ("healthy", "leukemia")
    return ImageSet(
        name="cnmc2019_mini",
        paths=tuple(root / r["path"] for r in rows),
        labels=np.array([classes.index(r["label"]) for r in rows], dtype=np.int64),
        classes=classes,
        groups=tuple(f"patient-{r['patient_id']}" for r in rows),
        positive="leukemia",
        root=root,
    )


@pytest.mark.slow
@pytest.mark.realdata
def test_efficientnet_lite0_finetunes_on_cnmc_mini_grouped_by_patient(dataset_dir, tmp_path):
    from bench.data.splits import make_holdout
    from bench.registry import get_registry

    try:
        backbone = get_registry().build_backbone("efficientnet_lite0")
    except UnknownNameError:
        pytest.skip("efficientnet_lite0 backbone plugin not available")
    imageset = _cnmc_imageset(dataset_dir("cnmc2019_mini"))
    samples = Samples.originals(imageset)
    groups = np.asarray(imageset.groups, dtype=object)
    train, test = make_holdout(imageset.labels, groups, test_size=0.2, seed=0)
    assert not set(groups[train]) & set(groups[test])
    settings = FinetuneSettings.from_options(
        {"epochs": 1, "batch_size": 8, "lr": 3e-3, "optimizer": "adamw"}
    )
    res = finetune_cv(
        samples,
        backbone,
        [(train, test)],
        settings,
        workdir=tmp_path,
        progress=False,
        backbone_name="efficientnet_lite0",
    )[0]
    assert len(res.history) == len(train) // 8
    assert np.isfinite([h["loss"] for h in res.history]).all()
    assert res.y_pred.shape == (len(test),) and "accuracy" in res.metrics
    # pretrained weights + 1 epoch rank held-out patients' cells better than chance (0.875 measured)
    assert res.metrics["roc_auc"] > 0.6
    print(f"cnmc2019_mini efficientnet_lite0 1 epoch: {res.metrics} {res.images_per_s:.1f} img/s")


@pytest.mark.parametrize(
    "options, why",
    [
        ({"optimizer": "adam"}, "optimizer 'adam'"),
        ({"schedule": "cosine"}, "schedule 'cosine'"),
        ({"amp": "fp16"}, "amp 'fp16'"),
    ],
)
def test_cuda_graph_refuses_what_it_cannot_capture(options, why) -> None:
    with pytest.raises(UserError, match=why):
        FinetuneSettings.from_options({"cuda_graph": True, **options})
    assert FinetuneSettings.from_options({"cuda_graph": True, "amp": "bf16"}).cuda_graph
