"""Suite files: validation with key paths and suggestions, overrides, the plan of cells."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import UserError
from bench.registry import get_registry
from bench.suite import builtin_suites, load_suite, parse_override

MINIMAL = """
[suite]
name = "t"
[data]
dataset = "synthetic"
[[protocol]]
kind = "features"
backbones = ["efficientnet_lite0"]
classifiers = ["knn1", "lda"]
folds = 3
"""


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return str(p)


def test_shipped_suites_validate():
    names = set(builtin_suites())
    assert {"quickstart", "loey2020", "loey2020-grouped", "backbone-sweep"} <= names
    for name in names:
        suite = load_suite(name, registry=get_registry())
        assert suite.cells()


def test_large_suite_keeps_exact_classifiers_and_labels_the_approximations():
    reg = get_registry()
    suite = load_suite("model1-large", registry=reg)
    (table,) = suite.protocols
    assert table["split"] == "grouped" and table["folds"] == 10
    specs = {name: reg.classifier(name) for name in table["classifiers"]}
    exact = {n for n, s in specs.items() if not s.approximates}
    assert exact == {"dt", "lda", "knn1"}
    approx = {s.approximates for n, s in specs.items() if s.approximates}
    assert approx == {"svm-linear", "svm-gaussian", "svm-cubic"}  # one for each paper SVM
    assert all("\u2248" in s.paper_label for s in specs.values() if s.approximates)


def test_paper_suite_is_labelled_leaky_and_grouped_is_not():
    leaky = load_suite("loey2020", registry=get_registry())
    safe = load_suite("loey2020-grouped", registry=get_registry())
    assert all(p["split"] == "paper-leaky" for p in leaky.protocols)
    assert all(p["split"] == "grouped" for p in safe.protocols)
    assert leaky.config["augment"] == {"scheme": "loey2020", "copies": 5}
    ft = leaky.protocols[1]
    assert (
        ft["holdout"] == 0.2 and ft["settings"]["batch_size"] == 5 and ft["settings"]["epochs"] == 6
    )


def test_cells_and_defaults(tmp_path):
    suite = load_suite(write(tmp_path, MINIMAL), registry=get_registry())
    assert [c.classifier for c in suite.cells()] == ["knn1", "lda"]
    assert suite.seeds == [0]
    assert suite.config["run"]["device"] == "auto"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            MINIMAL.replace('name = "t"', 'name = "t"\nsede = 1'),
            r"suite.sede: unknown key; did you mean 'seed'",
        ),
        (MINIMAL.replace("folds = 3", 'folds = "3"'), r"protocol\[0\].folds: expected an integer"),
        (
            MINIMAL.replace('"knn1"', '"knn"'),
            r"protocol\[0\].classifiers: unknown classifier 'knn'; did you mean 'knn1'",
        ),
        (
            MINIMAL.replace('kind = "features"', 'kind = "feature"'),
            r"'feature' is not allowed; did you mean 'features'",
        ),
        (
            MINIMAL + "\n[classifer.knn1]\nx=1\n",
            r"classifer: unknown table; did you mean 'classifier'",
        ),
        (
            MINIMAL + "\n[classifier.svm-cubc]\nC=1\n",
            r"classifier.svm-cubc: unknown classifier 'svm-cubc'; did you mean 'svm-cubic'",
        ),
        (
            MINIMAL.replace('dataset = "synthetic"', 'dataset = "synthetc"'),
            r"data.dataset: unknown dataset 'synthetc'; did you mean 'synthetic'",
        ),
        (MINIMAL.replace("folds = 3", "folds = 3\nholdout = 0.2"), "features protocols use folds"),
        ("[suite\n", "not valid TOML"),
        (MINIMAL + "\n[classifier.knn1]\nn_neighbours = 3\n", r"classifier.knn1: .*unknown option"),
        (
            MINIMAL + '\n[run]\ndecoder = "fats"\n',
            r"run.decoder: unknown decoder 'fats'; did you mean 'fast'",
        ),
        (MINIMAL + '\n[run]\ndevice = "gpu"\n', r"run.device: unknown device 'gpu'"),
        (
            MINIMAL + '\n[[protocol]]\nkind = "finetune"\nbackbones = ["efficientnet_lite0"]\n'
            'settings = { device = "quantum" }\n',
            r"protocol\[1\].settings: .*unknown device 'quantum'",
        ),
        (MINIMAL.replace('name = "t"', 'name = "../../out"'), "suite.name: .*cannot name"),
        (MINIMAL.replace('name = "t"', 'name = "t"\nseeds = [0, 0]'), "repeats a seed"),
        (
            MINIMAL.replace('["knn1", "lda"]', '["knn1", "knn1"]'),
            r"protocol\[0\].classifiers: 'knn1' listed twice",
        ),
    ],
)
def test_validation_errors_name_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UserError, match=message) as info:
        load_suite(path, registry=get_registry())
    assert "s.toml" in str(info.value)


def test_set_overrides_and_data(tmp_path):
    suite = load_suite(
        write(tmp_path, MINIMAL),
        overrides=["protocol.0.folds=5", "suite.seeds=[1, 2]", "classifier.knn1.n_neighbors=3"],
        data_path=str(tmp_path),
        registry=get_registry(),
    )
    assert suite.protocols[0]["folds"] == 5
    assert suite.seeds == [1, 2]
    assert len(suite.cells()) == 4
    assert suite.classifier_options("knn1") == {"n_neighbors": 3}
    assert suite.data_path() == tmp_path.resolve()


def test_parse_override_values():
    assert parse_override("a.b=1") == (["a", "b"], 1)
    assert parse_override("a=cpu") == (["a"], "cpu")
    assert parse_override('a="x"') == (["a"], "x")
    assert parse_override("a=[1,2]") == (["a"], [1, 2])
    with pytest.raises(UserError, match="expected KEY.PATH=VALUE"):
        parse_override("nonsense")


def test_unknown_suite_name_suggests():
    with pytest.raises(UserError, match="did you mean 'quickstart'"):
        load_suite("quikstart")


def test_bad_memory_limit_fails_when_the_suite_loads():
    import pytest as _pytest

    from bench.errors import UserError
    from bench.suite import load_suite

    with _pytest.raises(UserError, match="run.memory_limit"):
        load_suite("quickstart", overrides=["run.memory_limit='lots'"])
