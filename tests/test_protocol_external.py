"""The ``external`` protocol: train on the suite's data, test on other sets; unit-level CIs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.cluster_stats import unit_summary, weighted_binary_auc
from bench.errors import UserError
from bench.metrics import roc_auc
from bench.protocols.external import match_classes
from bench.registry import get_registry
from bench.runner import run_suite
from bench.stats import bootstrap_ci
from bench.suite import load_suite
from tests.test_end_to_end import ThrowawayPlugin


# -- class matching ----------------------------------------------------------------------
def test_classes_match_by_name_and_through_a_class_map():
    same = match_classes(["healthy", "leukemia"], ["leukemia", "healthy"], {}, "t")
    assert same.to_train == (1, 0)
    mapped = match_classes(
        ["healthy", "leukemia"], ["ALL", "hem"], {"ALL": "leukemia", "hem": "healthy"}, "t"
    )
    assert mapped.to_train == (1, 0) and mapped.renamed == (("ALL", "leukemia"), ("hem", "healthy"))
    keep, labels = mapped.labels(np.array([0, 1, 1]))
    assert keep.tolist() == [0, 1, 2] and labels.tolist() == [1, 0, 0]


def test_a_mismatch_lists_both_class_sets():
    with pytest.raises(UserError) as info:
        match_classes(
            ["healthy", "leukemia"], ["ALL", "hem"], {}, "s.toml: protocol[0].test_data[0]"
        )
    text = str(info.value)
    assert "protocol[0].test_data[0]" in text
    assert "['ALL', 'hem']" in text and "['healthy', 'leukemia']" in text and "class_map" in text
    with pytest.raises(UserError, match="maps to 'leukaemia'"):
        match_classes(["healthy", "leukemia"], ["ALL", "hem"], {"ALL": "leukaemia"}, "t")
    with pytest.raises(UserError, match="'AML' not among the test set's classes"):
        match_classes(["healthy", "leukemia"], ["ALL", "hem"], {"AML": "leukemia"}, "t")


def test_only_shared_drops_unmatched_test_classes_and_lists_missing_ones():
    m = match_classes(["a", "b", "c"], ["A", "B", "X"], {"A": "a", "B": "b"}, "t", only_shared=True)
    assert m.to_train == (0, 1, -1) and m.dropped == ("X",) and m.missing == ("c",)
    keep, labels = m.labels(np.array([0, 2, 1, 2]))
    assert keep.tolist() == [0, 2] and labels.tolist() == [0, 1]


# -- intervals over independent units ----------------------------------------------------
def test_weighted_auc_with_unit_weights_is_the_plain_auc():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + y, 1)  # ties included
    assert weighted_binary_auc(y == 1, s, np.ones((1, 200)))[0] == pytest.approx(
        roc_auc(y, s, n_classes=2, positive_index=1)
    )
    twice = weighted_binary_auc(y == 1, s, np.full((1, 200), 2.0))[0]
    assert twice == pytest.approx(roc_auc(y, s, n_classes=2, positive_index=1))


def test_copies_of_one_unit_do_not_narrow_the_interval():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 60)
    pred = np.where(rng.random(60) < 0.75, y, 1 - y)
    units = np.arange(60).astype(str)
    one = unit_summary(y, pred, None, units, n_classes=2, positive_index=1, n_boot=2000)
    # the same 60 units, each seen 10 times (augmented copies / cells of one patient)
    y10, p10, u10 = np.repeat(y, 10), np.repeat(pred, 10), np.repeat(units, 10)
    ten = unit_summary(y10, p10, None, u10, n_classes=2, positive_index=1, n_boot=2000)
    naive = bootstrap_ci(lambda a, b: float(np.mean(a == b)), [y10, p10], n_boot=2000)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert ten["n_units"] == 60 and ten["n"] == 600
    assert ten["pooled"]["accuracy"] == one["pooled"]["accuracy"]
    assert width(ten["ci"]["accuracy"]) == pytest.approx(width(one["ci"]["accuracy"]), abs=0.03)
    assert width(ten["ci"]["accuracy"]) > 2 * width(naive)  # per-sample resampling is overconfident


# -- through a run -----------------------------------------------------------------------
def _imagefolder(root: Path, seed: int, names: dict[str, str], n: int = 6) -> Path:
    """An imagefolder of synthetic smears with other class names (``names``: synthetic -> folder)."""
    from plugins.synthetic import synthetic_dataset

    src = synthetic_dataset(n_per_class=n, size=64, seed=seed)
    for p, label in zip(src.paths, src.labels, strict=True):
        dst = root / names[src.classes[label]] / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dst)
    return root


SUITE = """
[suite]
name = "external-tiny"
[data]
dataset = "synthetic"
options = {{ n_per_class = 10, size = 64 }}
[[protocol]]
kind = "external"
backbones = ["colour-stats"]
classifiers = ["centroid", "knn1"]
folds = 2
finetune = true
settings = {{ epochs = 1, batch_size = 4 }}
test_data = [
  {{ dataset = "imagefolder", path = "{other}", name = "other-site"{class_map} }},
  {{ dataset = "synthetic", options = {{ n_per_class = 5, size = 64, seed = 3 }}, name = "synth-b" }},
]
"""


@pytest.fixture
def throwaway():
    registry = get_registry()
    registry.register(ThrowawayPlugin(), name="throwaway")
    yield registry
    registry.unregister("throwaway")


def _suite(tmp_path: Path, class_map: str) -> Path:
    other = _imagefolder(tmp_path / "other", 9, {"healthy": "hem", "leukemia": "ALL"})
    f = tmp_path / "s.toml"
    f.write_text(SUITE.format(other=other.as_posix(), class_map=class_map))
    return f


def test_class_mismatch_exits_2_before_any_record(tmp_path, throwaway, capsys):
    f = _suite(tmp_path, "")
    code = main(["run", str(f), "--results-dir", str(tmp_path / "r"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "test_data[0]" in err and "['ALL', 'hem']" in err and "['healthy', 'leukemia']" in err
    assert not list((tmp_path / "r").glob("*.json")) if (tmp_path / "r").exists() else True


def test_a_bad_test_image_fails_the_dry_run_and_leaves_no_record(tmp_path, throwaway, capsys):
    f = _suite(tmp_path, ', class_map = { hem = "healthy", ALL = "leukemia" }')
    (tmp_path / "other" / "hem" / "empty.png").write_bytes(b"")
    assert main(["run", str(f), "--dry-run"]) == 2
    assert "empty.png: zero-byte file" in capsys.readouterr().err
    assert main(["run", str(f), "--results-dir", str(tmp_path / "r"), "--no-progress"]) == 2
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").glob("*.json"))


def test_a_one_class_test_set_is_scored_with_the_other_class_missing(tmp_path, throwaway, capsys):
    f = _suite(tmp_path, ', class_map = { hem = "healthy" }')
    shutil.rmtree(tmp_path / "other" / "ALL")  # the other site sent healthy smears only
    text = (
        f.read_text()
        .replace("finetune = true", "finetune = false")
        .replace("settings = { epochs = 1, batch_size = 4 }\n", "")
    )
    f.write_text(text)
    code = main(["run", str(f), "--results-dir", str(tmp_path / "r"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    record = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    cell = next(c for c in record["cells"] if "test=other-site" in c["id"])
    assert cell["status"] == "complete" and cell["external"]["test"]["missing"] == ["leukemia"]
    pooled = cell["metrics"]["pooled"]  # no leukemia image: recall undefined, not 0
    assert pooled["recall"] is None and pooled["specificity"] is not None


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            'test_data = [{ dataset = "imagefolder", paht = "x" }]',
            "paht: unknown key; did you mean 'path'",
        ),
        ("test_data = []", "test_data: expected a list of tables"),
        ("n_boot = -1", "n_boot: -1 is out of range"),
        ("finetune = false\nsettings = { lr = 0.1 }", "settings are fine-tuning settings"),
        ("settings = { lr = nan }", "settings.lr: nan is not a finite number"),
    ],
)
def test_bad_tables_exit_before_any_image(tmp_path, extra, message):
    f = tmp_path / "s.toml"
    base = SUITE.split("finetune = true")[0].format(other="x", class_map="")
    text = base + ("finetune = true\n" if "finetune" not in extra else "") + extra + "\n"
    if "test_data" not in extra:
        text += 'test_data = [{ dataset = "synthetic", name = "b" }]\n'
    f.write_text(text.replace("colour-stats", "efficientnet_lite0").replace('"centroid", ', ""))
    with pytest.raises(UserError, match=message):
        load_suite(str(f), registry=get_registry())


@pytest.mark.slow
def test_external_run_models_1_and_2_reports_and_resumes(tmp_path, throwaway, capsys):
    from bench.protocol_reports import protocol_tables

    f = _suite(tmp_path, ', class_map = { ALL = "leukemia", hem = "healthy" }')
    # two training images also in the test set: they must be left out, not scored
    from plugins.synthetic import synthetic_dataset

    train = synthetic_dataset(n_per_class=10, size=64, seed=0)
    for p in train.paths[:2]:
        shutil.copyfile(p, tmp_path / "other" / "hem" / f"dup-{p.name}")
    assert main(["run", str(f), "--dry-run"]) == 0
    assert "external" in capsys.readouterr().out
    suite = load_suite(str(f), registry=throwaway)
    record, path = run_suite(suite, registry=throwaway, results_dir=tmp_path / "r", progress=False)
    assert record["status"] == "complete"
    assert main(["report", str(path), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "External validation - trained on synthetic" in out and "knn1" not in out.split("###")[0]
    cells = {(c["classifier"], c["external"]["test"]["name"]): c for c in record["cells"]}
    assert set(cells) == {
        (m, t) for m in ("centroid", "knn1", "finetune") for t in ("other-site", "synth-b")
    }
    other = cells[("knn1", "other-site")]
    assert other["external"]["test"]["overlap_with_training"] == 2
    assert other["external"]["test"]["n_images"] == 12 and other["external"]["test"]["renamed"]
    assert len(other["folds"]) == 1 and sorted(other["folds"][0]["test_index"]) == list(range(12))
    for c in record["cells"]:
        e, inside = c["external"]["external"], c["external"]["in_domain"]
        assert e["n_units"] == c["external"]["test"]["n_units"]
        assert inside["split"] == "grouped 2-fold" and inside["n_units"] == 20
        drop = c["external"]["drop"]["accuracy"]
        assert drop == pytest.approx(inside["pooled"]["accuracy"] - e["pooled"]["accuracy"])
        assert c["metrics"]["ci"]["accuracy"] == e["ci"]["accuracy"]  # Table 1 shows unit CIs
    assert cells[("finetune", "synth-b")]["training"]["epochs_run"] == 1
    table = protocol_tables([record])[0]
    assert table.key == "external-drop" and len(table.rows) == 6
    assert any("-> other-site" in r[0] for r in table.rows)
    again, _ = run_suite(suite, registry=throwaway, results_dir=tmp_path / "r2", progress=False)
    for a, b in zip(record["cells"], again["cells"], strict=True):

        def strip(c):  # nan != nan, so compare the JSON text
            return json.dumps([{k: v for k, v in f.items() if k != "fit_s"} for f in c["folds"]])

        assert strip(a) == strip(b)
        if a["classifier"] != "finetune":
            assert b["predictions_from_cache"] is True


@pytest.mark.slow
def test_real_cnmc_patients_to_aria_images(tmp_path, dataset_dir):
    """Real data: train on C-NMC mini (37 patients), test on 20 Aria images."""
    cnmc, aria = dataset_dir("cnmc2019_mini"), dataset_dir("aria_all_pbs_binary")
    test = tmp_path / "aria20"
    for cls in ("healthy", "leukemia"):
        (test / cls).mkdir(parents=True)
        for p in sorted((aria / cls).iterdir())[:10]:
            (test / cls / p.name).symlink_to(p)
    f = tmp_path / "s.toml"
    f.write_text(
        f"""
[suite]
name = "real-external"
[data]
dataset = "imagefolder"
path = "{cnmc.as_posix()}"
[[protocol]]
kind = "external"
backbones = ["efficientnet_lite0"]
classifiers = ["svm-linear"]
folds = 3
n_boot = 300
test_data = [{{ dataset = "imagefolder", path = "{test.as_posix()}", name = "aria20" }}]
"""
    )
    record, _ = run_suite(load_suite(str(f)), results_dir=tmp_path / "r", progress=False)
    cell = record["cells"][0]
    s = cell["external"]
    assert s["test"]["n_images"] == 20 and s["external"]["n_units"] == 20
    assert s["in_domain"]["n_units"] == 37  # intervals over patients, not cells
    lo, hi = s["external"]["ci"]["accuracy"]
    assert lo <= s["external"]["pooled"]["accuracy"] <= hi


def test_the_tables_class_map_applies_to_the_sets_that_have_those_classes():
    from bench.protocols.external.testsets import effective_class_map, validate_test_data

    specs = validate_test_data(
        [
            {"dataset": "imagefolder", "path": "a/bccd", "class_map": {"BASOPHIL": "ba"}},
            {"dataset": "imagefolder", "path": "b/kaggle"},
        ],
        "t.test_data",
        {"BASOPHIL": "basophil", "EOSINOPHIL": "eosinophil"},
    )
    assert [s["name"] for s in specs] == ["bccd", "kaggle"]
    assert effective_class_map(specs[0], ["BASOPHIL", "EOSINOPHIL"]) == {
        "BASOPHIL": "ba",  # the set's own entry wins
        "EOSINOPHIL": "eosinophil",
    }
    assert effective_class_map(specs[1], ["EOSINOPHIL", "LYMPHOCYTE"]) == {
        "EOSINOPHIL": "eosinophil"
    }
    with pytest.raises(UserError, match="names two test sets"):
        validate_test_data(
            [{"dataset": "x", "path": "a/s"}, {"dataset": "y", "path": "b/s"}], "t", {}
        )
