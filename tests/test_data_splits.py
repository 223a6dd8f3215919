"""Splits: grouped folds never leak; the paper's leaky split does, and says so."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from bench.data.augment import expand
from bench.data.imageset import ImageSet
from bench.data.splits import LeakError, check_no_leak, make_folds, make_holdout
from bench.errors import UserError


def _set(n: int) -> ImageSet:
    paths = tuple(Path(f"/d/img{i}.png") for i in range(n))
    return ImageSet(
        name="t",
        paths=paths,
        labels=(np.arange(n) % 3 == 0).astype(np.int64),
        classes=("a", "b"),
        groups=tuple(p.name for p in paths),
        root=Path("/d"),
    )


def test_grouped_folds_on_augmented_set_do_not_leak():
    samples = expand(_set(60), copies=5)
    folds = make_folds(samples.labels, samples.groups, folds=10, seed=0)
    assert len(folds) == 10
    check_no_leak(folds, samples.groups)
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(300))  # every sample tested once
    for _, te in folds:
        assert set(samples.labels[te]) == {0, 1}


def test_paper_leaky_split_leaks_and_logs(caplog):
    samples = expand(_set(60), copies=5)
    with caplog.at_level(logging.WARNING, logger="bench.data.splits"):
        folds = make_folds(samples.labels, samples.groups, folds=10, kind="paper-leaky")
    assert any(r.getMessage().startswith("LEAKY split") for r in caplog.records)
    with pytest.raises(LeakError):
        check_no_leak(folds, samples.groups)


def test_stratified_kfold_needs_distinct_groups():
    s = _set(40)
    folds = make_folds(s.labels, s.groups, folds=5, kind="stratified-kfold")
    check_no_leak(folds, s.groups)
    samples = expand(s)
    with pytest.raises(UserError, match="grouped-kfold"):
        make_folds(samples.labels, samples.groups, folds=5, kind="stratified-kfold")


def test_too_few_groups_per_class_is_a_user_error():
    s = _set(20)  # class b has 7 images
    with pytest.raises(UserError, match="at least 10 groups"):
        make_folds(s.labels, s.groups, folds=10)
    with pytest.raises(UserError, match="unknown split kind"):
        make_folds(s.labels, s.groups, kind="random")


def test_holdout_grouped_and_leaky(caplog):
    samples = expand(_set(100), copies=5)
    tr, te = make_holdout(samples.labels, samples.groups, test_size=0.2, seed=1)
    check_no_leak((tr, te), samples.groups)
    assert 0.15 < len(te) / len(samples) < 0.25
    assert len(set(tr) | set(te)) == len(samples)
    with caplog.at_level(logging.WARNING, logger="bench.data.splits"):
        ltr, lte = make_holdout(samples.labels, samples.groups, leaky=True)
    assert "LEAKY split" in caplog.text
    with pytest.raises(LeakError):
        check_no_leak((ltr, lte), samples.groups)
    assert make_holdout(samples.labels, samples.groups, seed=1)[1].tolist() == te.tolist()


def test_cnmc_patients_never_split(dataset_dir):
    from bench.data.loaders import load_cnmc

    s = load_cnmc(dataset_dir("cnmc2019_mini"))
    assert len(set(s.groups)) == 37
    folds = make_folds(s.labels, s.groups, folds=5, seed=0)
    check_no_leak(folds, s.groups)
    samples = expand(s, copies=5)
    folds = make_folds(samples.labels, samples.groups, folds=5, seed=0)
    check_no_leak(folds, samples.groups)
    tr, te = make_holdout(samples.labels, samples.groups, seed=0)
    check_no_leak((tr, te), samples.groups)
    assert not set(samples.groups[tr]) & set(samples.groups[te])
