"""Seeded undersampling and rectangle masking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.data.balance import undersample
from bench.data.imageset import ImageSet
from bench.data.mask import apply_mask, mask_key
from bench.errors import UserError


def _set(n_a: int, n_b: int) -> ImageSet:
    n = n_a + n_b
    return ImageSet(
        name="t",
        paths=tuple(Path(f"/d/{i}.png") for i in range(n)),
        labels=np.array([0] * n_a + [1] * n_b),
        classes=("healthy", "leukemia"),
        groups=tuple(str(i) for i in range(n)),
        positive="leukemia",
    )


def test_undersample_balances_and_reports_counts():
    out, info = undersample(_set(10, 54), seed=0)
    assert out.class_counts() == {"healthy": 10, "leukemia": 10}
    assert info == {
        "method": "undersample",
        "seed": 0,
        "before": {"healthy": 10, "leukemia": 54},
        "after": {"healthy": 10, "leukemia": 10},
    }
    again, _ = undersample(_set(10, 54), seed=0)
    assert again.paths == out.paths
    other, _ = undersample(_set(10, 54), seed=1)
    assert other.paths != out.paths
    assert list(out.paths) == sorted(out.paths, key=lambda p: int(p.stem))  # order kept
    with pytest.raises(UserError):
        undersample(_set(5, 0))


def test_apply_mask_blanks_lower_right_corner():
    img = np.full((100, 200, 3), 255, np.uint8)
    out = apply_mask(img, [[0.75, 0.8, 1.0, 1.0]])
    assert not out[80:, 150:].any()
    assert out[:80].all() and out[:, :150].all()
    assert img.all()  # input untouched
    assert apply_mask(img, []) is img


def test_mask_validation_and_key():
    img = np.zeros((4, 4, 3), np.uint8)
    for bad in ([[0, 0, 1.5, 1]], [[0.5, 0, 0.4, 1]], [[0, 0, 1]], "0,0,1,1", [["a", 0, 1, 1]]):
        with pytest.raises(UserError, match="mask"):
            apply_mask(img, bad)
    assert mask_key([[0.8, 0.85, 1, 1]]) == "mask[0.8,0.85,1,1]"
    assert mask_key([]) == ""
