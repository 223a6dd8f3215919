"""The synthetic dataset: seeded, cached, registered, two distinguishable classes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.errors import UserError
from bench.registry import get_registry


def test_synthetic_is_registered_and_needs_no_path():
    spec = get_registry().dataset("synthetic")
    assert spec.needs_path is False
    s = spec.factory(n_per_class=4, size=96)
    assert len(s) == 8
    assert s.classes == ("healthy", "leukemia") and s.positive == "leukemia"
    assert s.meta["synthetic"] is True
    assert s.class_counts() == {"healthy": 4, "leukemia": 4}
    assert len(set(s.groups)) == 8
    with Image.open(s.paths[0]) as im:
        assert im.size == (96, 96) and im.mode == "RGB"


def test_synthetic_is_cached_under_leukobench_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LEUKOBENCH_CACHE", str(tmp_path))
    from plugins.synthetic import synthetic_dataset

    a = synthetic_dataset(n_per_class=3, size=64, seed=1)
    assert a.root.parent == tmp_path / "synthetic"
    mtimes = [p.stat().st_mtime_ns for p in a.paths]
    b = synthetic_dataset(n_per_class=3, size=64, seed=1)
    assert [p.stat().st_mtime_ns for p in b.paths] == mtimes  # not redrawn
    assert not [p for p in (tmp_path / "synthetic").iterdir() if p.name.startswith(".tmp")]
    c = synthetic_dataset(n_per_class=3, size=64, seed=2)
    assert c.root != a.root
    assert not np.array_equal(
        np.asarray(Image.open(a.paths[0])), np.asarray(Image.open(c.paths[0]))
    )


@pytest.mark.parametrize("damage", ["truncate", "delete", "replace", "no-manifest"])
def test_a_damaged_synthetic_set_is_drawn_again(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("LEUKOBENCH_CACHE", str(tmp_path))
    from plugins.synthetic import MANIFEST, synthetic_dataset

    first = synthetic_dataset(n_per_class=3, size=64)
    original = [p.read_bytes() for p in first.paths]
    target = first.paths[1]
    if damage == "truncate":
        target.write_bytes(original[1][:200])
    elif damage == "delete":
        target.unlink()
    elif damage == "replace":  # another valid image: the fingerprint would move
        target.write_bytes(original[4])
    else:  # a set drawn before manifests existed: redrawn quietly
        (first.root / MANIFEST).unlink()
    if damage == "no-manifest":
        again = synthetic_dataset(n_per_class=3, size=64)
    else:
        with pytest.warns(UserWarning, match="drawing it again"):
            again = synthetic_dataset(n_per_class=3, size=64)
    assert again.root == first.root
    assert [p.read_bytes() for p in again.paths] == original  # the same images, bit for bit
    assert [p.name for p in (tmp_path / "synthetic").iterdir()] == [first.root.name]


def test_synthetic_classes_differ_in_nucleus_size():
    """Blasts have much more dark-purple nucleus than mature white cells."""
    from plugins.synthetic import draw_field

    def purple_fraction(leukemia: bool) -> float:
        fr = []
        for i in range(6):
            img = draw_field(np.random.default_rng(i), 128, leukemia).astype(int)
            purple = (img[..., 2] > img[..., 0]) & (img[..., 1] < 110)
            fr.append(purple.mean())
        return float(np.mean(fr))

    assert purple_fraction(True) > 2 * purple_fraction(False)


def test_synthetic_rejects_bad_options():
    from plugins.synthetic import synthetic_dataset

    with pytest.raises(UserError, match="colour"):
        synthetic_dataset(colour="red")
    with pytest.raises(UserError, match="n_per_class"):
        synthetic_dataset(n_per_class=0)
    with pytest.raises(UserError, match=r"n_per_class must be in \[1, 20,000\]"):
        synthetic_dataset(n_per_class=10**9)  # refused before a single image is drawn
    for bad in (8.9, "8", True):
        with pytest.raises(UserError, match="n_per_class must be an integer"):
            synthetic_dataset(n_per_class=bad)
    with pytest.raises(UserError, match="seed must be in"):
        synthetic_dataset(seed=-1)
