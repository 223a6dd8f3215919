"""Result-record helpers."""

from __future__ import annotations

import pytest


def test_compact_history_round_trips_rows() -> None:
    from bench.results import compact_history, history_rows

    rows = [
        {
            "epoch": 1,
            "iteration": i + 1,
            "loss": 0.1234567891 * (i + 1),
            "accuracy": 0.2 * i,
            "lr": 1e-4,
        }
        for i in range(4)
    ]
    cols = compact_history(rows)
    assert cols["lr"] == 1e-4 and cols["iteration"] == [1, 2, 3, 4]
    back = history_rows(cols)
    assert [r["accuracy"] for r in back] == [r["accuracy"] for r in rows]
    assert [r["loss"] for r in back] == pytest.approx([r["loss"] for r in rows], rel=1e-5)
    assert history_rows(rows) == rows and history_rows({}) == []
    varying = compact_history([{**rows[0], "lr": 1e-3}, rows[1]])
    assert varying["lr"] == [1e-3, 1e-4]


def test_compact_transforms_round_trips_keys() -> None:
    from bench.results import compact_transforms, transform_keys

    keys = ["id", "reflect:flip=1", "id", "rotate:angle=30", "reflect:flip=1"]
    table = compact_transforms(keys)
    assert table["keys"] == ["id", "reflect:flip=1", "rotate:angle=30"]
    assert transform_keys(table) == keys and transform_keys(keys) == keys
