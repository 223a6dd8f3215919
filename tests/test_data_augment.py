"""The paper's loey2020 augmentation: exact geometry, x5, seeded, group-preserving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.data.augment import (
    ANGLES,
    COPY_KINDS,
    apply_transform,
    expand,
    random_transform,
)
from bench.data.imageset import IDENTITY, ImageSet, Transform
from bench.errors import UserError


def _set(n: int, groups: list[str] | None = None) -> ImageSet:
    paths = tuple(Path(f"/d/{'ab'[i % 2]}/img{i}.png") for i in range(n))
    return ImageSet(
        name="t",
        paths=paths,
        labels=np.arange(n) % 2,
        classes=("a", "b"),
        groups=tuple(groups or [p.name for p in paths]),
        root=Path("/d"),
    )


def test_translation_shifts_with_black_fill():
    img = np.random.default_rng(0).integers(1, 256, (227, 227, 3), dtype=np.uint8)
    out = apply_transform(img, Transform("translate", dx=20, dy=-15))
    np.testing.assert_array_equal(out[:-15, 20:], img[15:, :-20])
    assert not out[:, :20].any() and not out[-15:].any()


def test_translation_scales_with_input_size():
    img = np.random.default_rng(1).integers(1, 256, (454, 454, 3), dtype=np.uint8)
    out = apply_transform(img, Transform("translate", dx=20, dy=0))
    assert not out[:, :40].any() and out[:, 40:].all()


def test_reflection_is_left_right_mirror():
    img = np.random.default_rng(2).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        apply_transform(img, Transform("reflect", flip=True)), img[:, ::-1]
    )


def test_rotation_about_centre_same_size_black_corners():
    img = np.zeros((101, 101, 3), np.uint8)
    img[50, 60:90] = 255  # a bar pointing right from the centre
    out = apply_transform(img, Transform("rotate", angle=90.0))  # counter-clockwise
    assert out.shape == img.shape
    assert out[20:40, 50].min() > 200  # now points up
    assert out[50, 60:90].max() < 50
    full = np.full((101, 101, 3), 200, np.uint8)
    rot = apply_transform(full, Transform("rotate", angle=45.0))
    assert rot[0, 0].tolist() == [0, 0, 0] and rot[50, 50].tolist() == [200, 200, 200]


def test_identity_returns_input():
    img = np.zeros((4, 4, 3), np.uint8)
    assert apply_transform(img, IDENTITY) is img
    with pytest.raises(ValueError):
        apply_transform(np.zeros((4, 4), np.uint8), IDENTITY)


def test_expand_x5_reproduces_paper_counts_and_keeps_groups():
    s = _set(564)
    samples = expand(s, copies=5, seed=0)
    assert len(samples) == 2820
    assert np.bincount(samples.source).tolist() == [5] * 564
    kinds = [t.kind for t in samples.transforms[:5]]
    assert kinds == ["identity", *COPY_KINDS]
    assert list(samples.groups[:5]) == [s.groups[0]] * 5
    np.testing.assert_array_equal(samples.labels, np.repeat(s.labels, 5))
    for t in samples.transforms:
        if t.kind in ("translate", "composite"):
            assert 15 <= abs(t.dx) <= 25 and 15 <= abs(t.dy) <= 25
        if t.kind in ("rotate", "composite"):
            assert abs(t.angle) in ANGLES
    signs = {np.sign(t.dx) for t in samples.transforms if t.kind == "translate"}
    assert signs == {-1, 1}
    assert {np.sign(t.angle) for t in samples.transforms if t.kind == "rotate"} == {-1.0, 1.0}


def test_expand_is_seeded_and_stable_per_image():
    a = expand(_set(10), seed=3)
    b = expand(_set(10), seed=3)
    assert a.transforms == b.transforms
    assert expand(_set(10), seed=4).transforms != a.transforms
    more = expand(_set(12), seed=3)  # adding images does not change the others' copies
    assert more.transforms[:50] == a.transforms


def test_expand_options():
    s = _set(4)
    assert len(expand(s, scheme="none")) == 4
    assert len(expand(s, copies=1)) == 4
    assert len(expand(s, copies=9)) == 36
    with pytest.raises(UserError, match="scheme"):
        expand(s, scheme="mixup")
    with pytest.raises(UserError, match="copies"):
        expand(s, copies=0)


def test_random_transform_covers_all_kinds():
    rng = np.random.default_rng(0)
    kinds = {random_transform(rng).kind for _ in range(200)}
    assert kinds == {"identity", *COPY_KINDS}
    assert random_transform(rng, "none") == IDENTITY
