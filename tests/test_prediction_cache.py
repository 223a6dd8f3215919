"""Model 1 prediction cache: an entry is used only when it is sealed and whole, else refitted.

Whatever is wrong with an entry -- no checksum, a checksum that does not match, arrays
that are not exactly an entry's, or any failure while decoding it -- it is warned
about once, deleted and refitted; a run never stops on it.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.crossval import FoldPrediction
from bench.feature_cache import CacheCorruptionWarning
from bench.prediction_cache import PredictionCache, arrays_digest, unpack_entry

KEY = "ef" * 32


def _preds(score: bool = True) -> list[FoldPrediction]:
    rng = np.random.default_rng(3)
    return [
        FoldPrediction(
            fold=i,
            test_index=np.arange(i * 5, i * 5 + 5),
            y_true=rng.integers(0, 2, 5),
            y_pred=rng.integers(0, 2, 5),
            score=rng.random(5) if score else None,
            fit_s=0.25,
        )
        for i in range(2)
    ]


def _stored(cache: PredictionCache) -> tuple[Path, dict[str, np.ndarray]]:
    path = next(cache.root.glob("*/*.npz"))
    with np.load(path) as z:
        return path, {k: z[k] for k in z.files}


def _write(path: Path, arrays: dict[str, np.ndarray], how: str) -> None:
    """Store ``arrays``: ``raw`` as they are, ``strip`` without sha256, ``seal`` sealed again."""
    if how != "raw":
        arrays = {k: v for k, v in arrays.items() if k != "sha256"}
    if how == "seal":  # a checksum over the edited arrays: only the structure can tell
        arrays["sha256"] = np.array(arrays_digest(arrays))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def _with(**changes: object) -> Callable[[dict], None]:
    def change(z: dict) -> None:
        for name, value in changes.items():
            if value is None:
                z.pop(name)
            else:
                z[name] = np.asarray(value)

    return change


def _invert_y_pred(z: dict) -> None:
    for name in [k for k in z if k.startswith("y_pred_")]:
        z[name] = 1 - z[name]


BAD = {  # name: (change, how it is written back)
    "no-sha-y-pred-inverted": (_invert_y_pred, "strip"),
    "no-sha-n-folds-0": (_with(n_folds=0), "strip"),
    "no-sha-intact": (lambda z: None, "strip"),
    "n-folds-0": (_with(n_folds=0), "seal"),
    "n-folds-negative": (_with(n_folds=-1), "seal"),
    "n-folds-too-many": (_with(n_folds=3), "seal"),
    "n-folds-huge": (_with(n_folds=10**15), "seal"),
    "n-folds-vector": (_with(n_folds=[2]), "seal"),
    "n-folds-float": (_with(n_folds=2.0), "seal"),
    "n-folds-missing": (_with(n_folds=None), "seal"),
    "y-true-missing": (_with(y_true_1=None), "seal"),
    "y-pred-short": (_with(y_pred_0=[0, 1]), "seal"),
    "y-pred-2d": (_with(y_pred_0=np.zeros((5, 1), dtype=np.int64)), "seal"),
    "y-pred-negative": (_with(y_pred_0=[0, -1, 0, 1, 0]), "seal"),
    "test-index-float": (_with(test_index_0=np.arange(5.0)), "seal"),
    "score-int": (_with(score_0=np.arange(5)), "seal"),
    "score-short": (_with(score_0=np.zeros(4)), "seal"),
    "fit-s-nan": (_with(fit_s_0=np.nan), "seal"),
    "fold-twice": (_with(fold_1=0), "seal"),
    "extra-array": (_with(extra=1), "seal"),
    "sha-wrong-type": (_with(sha256=b"0" * 64), "raw"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_entry_is_warned_once_deleted_and_refitted(tmp_path, name):
    change, how = BAD[name]
    cache = PredictionCache(tmp_path)
    cache.put(KEY, _preds())
    path, arrays = _stored(cache)
    change(arrays)
    _write(path, arrays, how)
    with pytest.warns(CacheCorruptionWarning, match=f"{path.name} is corrupt") as record:
        assert cache.get(KEY) is None
    assert len(record) == 1 and not path.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get(KEY) is None  # now simply absent
    cache.put(KEY, _preds())
    assert [p.fold for p in cache.get(KEY)] == [0, 1]


def test_any_failure_while_decoding_is_a_bad_entry(tmp_path, monkeypatch):
    import bench.prediction_cache as pc

    cache = PredictionCache(tmp_path)
    cache.put(KEY, _preds())

    def boom(arrays):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(pc, "arrays_digest", boom)
    with pytest.warns(CacheCorruptionWarning, match="RuntimeError: unexpected"):
        assert cache.get(KEY) is None
    assert not list(cache.root.glob("*/*.npz"))


@pytest.mark.parametrize("score", [True, False])
def test_a_sound_entry_round_trips(tmp_path, score):
    cache = PredictionCache(tmp_path)
    cache.put(KEY, _preds(score))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = cache.get(KEY)
    for got, want in zip(back, _preds(score), strict=True):
        assert got.fold == want.fold and got.fit_s == want.fit_s
        for field in ("test_index", "y_true", "y_pred"):
            assert np.array_equal(getattr(got, field), getattr(want, field))
        assert (got.score is None) == (want.score is None)
        assert got.score is None or np.array_equal(got.score, want.score)


def test_unpack_entry_needs_the_checksum():
    arrays = {"n_folds": np.array(0)}
    with pytest.raises(ValueError, match="no checksum"):
        unpack_entry(arrays)
    with pytest.raises(ValueError, match="n_folds = 0"):
        unpack_entry({**arrays, "sha256": np.array(arrays_digest(arrays))})


# -- in a real run (findings P06, P09) --------------------------------------------------------
SUITE = """
[suite]
name = "pc"
[data]
dataset = "synthetic"
options = { n_per_class = 6, size = 64 }
[[protocol]]
kind = "features"
backbones = ["timm/resnet18"]
classifiers = ["lda", "knn1"]
folds = 2
[backbone."timm/resnet18"]
weights = "none"
"""


def _cells(record: Path) -> list:
    cells = json.loads(record.read_text())["cells"]
    return [(c["id"], c["metrics"], [f.get("y_pred") for f in c["folds"]]) for c in cells]


def test_a_run_refits_edited_and_malformed_entries_and_gives_the_same_record(tmp_path, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE)
    cache_dir, results = tmp_path / "cache", tmp_path / "r"
    argv = ["run", str(suite), "--results-dir", str(results), "--no-progress"]
    argv += ["--cache-dir", str(cache_dir)]
    assert main(argv) == 0
    capsys.readouterr()
    first = sorted(results.glob("*.json"))
    entries = sorted((cache_dir / "predictions").glob("*/*.npz"))
    assert len(entries) == 2
    for path, change in zip(entries, (_invert_y_pred, _with(n_folds=0)), strict=True):
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        change(arrays)
        _write(path, arrays, "strip")  # no sha256: as an entry from before checksums
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("prediction cache entry") == 2 and "internal error" not in err
    (second,) = sorted(set(results.glob("*.json")) - set(first))
    assert _cells(second) == _cells(first[0])
    assert main(argv) == 0  # refitted entries are sound again: no warning
    assert "prediction cache entry" not in capsys.readouterr().err
