"""The opt-in approximate SVMs: registered and labelled, options, determinism, agreement, notes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from bench.crossval import cross_validate
from bench.errors import UserError
from bench.registry import get_registry
from plugins.fast_estimators import LiblinearSVC, NystroemSVC, approx_svm, svm

APPROX = {
    "svm-linear-approx": "svm-linear",
    "svm-gaussian-nystroem": "svm-gaussian",
    "svm-cubic-nystroem": "svm-cubic",
}


def _data(n=240, d=40, seed=0, shift=1.2):
    """Non-negative two-class features (fc7-like: ReLU), float32; train/test halves."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    centre = rng.normal(size=d)
    X = np.maximum(rng.normal(size=(n, d)) + shift * y[:, None] * centre, 0).astype(np.float32)
    return X[: n // 2], y[: n // 2], X[n // 2 :], y[n // 2 :]


def _folds(n: int, k: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    parts = np.array_split(np.arange(n), k)
    return [(np.setdiff1d(np.arange(n), p), p) for p in parts]


def test_registered_opt_in_and_labelled_as_approximations():
    specs = get_registry().classifiers
    assert sum(s.in_paper for s in specs.values()) == 6
    for name, exact in APPROX.items():
        spec = specs[name]
        assert not spec.in_paper and spec.approximates == exact
        assert "≈" in spec.paper_label and spec.paper_label.startswith(specs[exact].paper_label)
        assert spec.description.startswith("APPROXIMATE")
    for spec in specs.values():  # the exact ones say nothing of the kind
        assert ("≈" in spec.paper_label) == bool(spec.approximates), spec.name
    for kernel, alt in svm.APPROXIMATION_FOR_KERNEL.items():
        assert alt.split()[0] in specs, kernel


def test_factory_options_and_bad_options():
    reg = get_registry()
    est = reg.build_classifier("svm-gaussian-nystroem", n_components=50, C=2)
    assert isinstance(est, NystroemSVC) and est.n_components == 50 and est.kernel == "rbf"
    cubic = reg.build_classifier("svm-cubic-nystroem")
    assert (cubic.kernel, cubic.degree, cubic.coef0, cubic.random_state) == ("poly", 3, 1.0, 0)
    assert isinstance(reg.build_classifier("svm-linear-approx", max_iter=50), LiblinearSVC)
    for name in APPROX:
        with pytest.raises(UserError, match="bogus"):
            reg.build_classifier(name, bogus=1)
        with pytest.raises(UserError, match=name):
            reg.build_classifier(name, C=-1)
        with pytest.raises(UserError, match="intercept_scaling"):
            reg.build_classifier(name, intercept_scaling=0)
    with pytest.raises(UserError, match="n_components"):
        reg.build_classifier("svm-gaussian-nystroem", n_components=0)
    with pytest.raises(UserError, match="kernel"):
        reg.build_classifier("svm-cubic-nystroem", kernel="linear")
    with pytest.raises(UserError, match="'n_component'.*did you mean 'n_components'"):
        reg.build_classifier("svm-cubic-nystroem", n_component=10)


@pytest.mark.parametrize("name", list(APPROX))
def test_fit_predict_deterministic_and_float32_untouched(name):
    Xtr, ytr, Xte, yte = _data()
    before = Xtr.copy()
    est = get_registry().build_classifier(name, n_components=60) if "nys" in name else None
    est = est or get_registry().build_classifier(name)
    a = clone(est).fit(Xtr, ytr)
    b = clone(est).fit(Xtr, ytr)
    assert np.array_equal(Xtr, before) and Xtr.dtype == np.float32
    assert a.converged_ and np.mean(a.predict(Xte) == yte) > 0.9
    assert np.array_equal(a.decision_function(Xte), b.decision_function(Xte))
    assert a.decision_function(Xte).shape == (len(Xte),)
    three = clone(est).fit(Xtr, ytr % 2 + (Xtr[:, 0] > 1))  # three classes: one-vs-rest
    assert three.decision_function(Xte).shape == (len(Xte), 3)


def test_liblinear_equals_plain_linear_svc_and_resolves_scaling():
    Xtr, ytr, Xte, _ = _data(seed=3)
    est = LiblinearSVC().fit(Xtr, ytr)
    rms = np.sqrt(np.mean(np.sum(Xtr.astype(np.float64) ** 2, axis=1)))
    assert est.intercept_scaling_ == pytest.approx(rms, rel=1e-12)
    ref = clone(est.svm_).fit(Xtr.astype(np.float64), ytr)  # a plain LinearSVC
    expected = ("squared_hinge", False, 1.0, 1e-3, 1000)  # primal Newton
    assert (ref.loss, ref.dual, ref.C, ref.tol, ref.max_iter) == expected
    assert ref.intercept_scaling == est.intercept_scaling_
    np.testing.assert_array_equal(est.decision_function(Xte), ref.decision_function(Xte))


def test_row_stats_and_gamma_as_svc_resolves_it():
    Xtr, ytr, _, _ = _data(n=5000, d=7, seed=4)  # more rows than one chunk
    rows = np.arange(1, len(Xtr), 2)
    var, sq = approx_svm.row_stats(Xtr, rows)
    x64 = Xtr[rows].astype(np.float64)
    assert var == pytest.approx(x64.var(), rel=1e-12)
    assert sq == pytest.approx(np.mean(np.sum(x64**2, axis=1)), rel=1e-12)
    assert np.array_equal(approx_svm.float64_rows(Xtr, rows), x64)
    est = NystroemSVC(n_components=20).fit(Xtr, ytr)
    assert est.gamma_ == pytest.approx(1 / (7 * Xtr.astype(np.float64).var()), rel=1e-12)


@pytest.mark.parametrize("name", list(APPROX))
def test_agrees_with_the_exact_svm_on_an_easy_problem(name):
    Xtr, ytr, Xte, yte = _data(n=400, d=30, seed=5, shift=2.0)
    reg = get_registry()
    approx = reg.build_classifier(name).fit(Xtr, ytr)
    exact = reg.build_classifier(APPROX[name]).fit(Xtr, ytr)
    assert type(approx.exact()) is type(exact) and approx.exact().kernel == exact.kernel
    same = np.mean(approx.predict(Xte) == exact.predict(Xte))
    assert same >= 0.97 and np.mean(exact.predict(Xte) == yte) >= 0.95, same


@pytest.mark.parametrize("loss", ["squared_hinge", "hinge"])  # primal (no lock), dual (locked)
def test_fold_fast_path_equals_fit_predict_serial_or_parallel(loss):
    X, y, _, _ = _data(n=360, d=25, seed=6)
    folds = _folds(len(X))
    names = {n: {"loss": loss, **({"n_components": 40} if "nys" in n else {})} for n in APPROX}
    serial = cross_validate(X, y, folds, names, positive_index=1, n_jobs=1)
    parallel = cross_validate(X, y, folds, names, positive_index=1, n_jobs=2)
    reg = get_registry()
    for name, opts in names.items():
        for fold, (train, test) in enumerate(folds):
            est = reg.build_classifier(name, **opts).fit(X[train], y[train])
            assert np.array_equal(serial[name][fold].y_pred, est.predict(X[test]))
            assert np.array_equal(serial[name][fold].score, est.decision_function(X[test]))
            assert np.array_equal(parallel[name][fold].score, serial[name][fold].score)


def test_large_fold_note_once_per_exact_svm(monkeypatch):
    X, y, _, _ = _data(n=480, d=20, seed=7)  # 240 rows
    folds = _folds(len(X))  # 3 folds of 160 training rows
    monkeypatch.setattr(svm, "LARGE_FOLD_ROWS", 150)
    notes: list[str] = []
    cross_validate(
        X,
        y,
        folds,
        {"svm-linear": {}, "svm-gaussian": {}, "svm-linear-approx": {}, "knn1": {}},
        positive_index=1,
        note=notes.append,
    )
    assert len(notes) == 2, notes
    linear = next(n for n in notes if "'linear'" in n)
    assert linear.startswith("note: exact SVM")
    assert "more than 150 training rows" in linear and "svm-linear-approx" in linear
    assert "n^2 and n^3" in linear
    assert any("svm-gaussian-nystroem" in n for n in notes)
    monkeypatch.setattr(svm, "LARGE_FOLD_ROWS", 160)  # "more than": 160 rows say nothing
    notes.clear()
    cross_validate(X, y, folds, {"svm-linear": {}}, positive_index=1, note=notes.append)
    assert notes == []


def test_unconverged_liblinear_says_so_once():
    X, y, _, _ = _data(n=240, d=20, seed=8, shift=0.2)  # hard: will not converge in 2 epochs
    notes: list[str] = []
    out = cross_validate(
        X,
        y,
        _folds(len(X)),
        {"svm-linear-approx": {"max_iter": 2, "loss": "hinge"}},
        positive_index=1,
        note=notes.append,
    )
    assert len(out["svm-linear-approx"]) == 3
    assert len(notes) == 1 and "max_iter=2 iterations" in notes[0], notes


def test_labels_reach_the_result_tables(tmp_path):
    from bench.render import render_text
    from bench.report import table1
    from bench.runner import run_suite
    from bench.suite import load_suite
    from tests.test_end_to_end import ThrowawayPlugin

    registry = get_registry()
    registry.register(ThrowawayPlugin(), name="throwaway")
    try:
        suite_file = tmp_path / "tiny.toml"
        suite_file.write_text(
            """
[suite]
name = "tiny-approx"
[data]
dataset = "synthetic"
options = { n_per_class = 8, size = 64 }
[[protocol]]
kind = "features"
backbones = ["colour-stats"]
classifiers = ["svm-linear-approx", "svm-cubic-nystroem"]
folds = 2
"""
        )
        suite = load_suite(str(suite_file), registry=registry)
        record, _ = run_suite(suite, registry=registry, results_dir=tmp_path / "r", progress=False)
    finally:
        registry.unregister("throwaway")
    labels = {c["classifier"]: c["label"] for c in record["cells"]}
    assert labels == {
        "svm-linear-approx": "SVM (linear) ≈ liblinear",
        "svm-cubic-nystroem": "SVM (cubic) ≈ Nyström",
    }
    md = render_text(table1(record), "md")
    assert "SVM (linear) ≈ liblinear" in md and "SVM (cubic) ≈ Nyström" in md
    latex = render_text(table1(record), "latex")
    assert r"SVM (linear) $\approx$ liblinear" in latex and "≈" not in latex
