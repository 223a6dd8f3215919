"""A run records its intervals over independent units: source images, or patients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench.backbone import Backbone
from bench.hookspecs import hookimpl
from bench.record_stats import cell_metrics_over_units
from bench.registry import get_registry
from bench.runner import run_suite
from bench.specs import BackboneSpec
from bench.stats import compare_methods
from bench.suite import load_suite


class ColourStatsPlugin:
    """A tiny, fast backbone (per-channel mean and std) so a real run takes seconds."""

    @hookimpl
    def leukobench_backbones(self):
        def factory(weights: str = "none", **_: object) -> Backbone:
            class ColourStats(torch.nn.Module):
                def forward(self, x: torch.Tensor) -> torch.Tensor:
                    return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)

            return Backbone(
                name="unit-stats",
                input_size=32,
                feature_dim=6,
                extractor=ColourStats().eval(),
                make_finetune=lambda k: torch.nn.Linear(6, k),
                weights="none",
                weights_digest="none",
                pretrained=False,
            )

        return BackboneSpec(name="unit-stats", factory=factory, description="test only")


@pytest.fixture
def registry():
    reg = get_registry()
    reg.register(ColourStatsPlugin(), name="unit-stats")
    yield reg
    reg.unregister("unit-stats")


def _run(tmp_path, registry, data: str, augment: str = ""):
    suite_file = tmp_path / "units.toml"
    suite_file.write_text(
        f"""
[suite]
name = "units"
[data]
{data}
{augment}
[[protocol]]
kind = "features"
backbones = ["unit-stats"]
classifiers = ["knn1", "lda"]
folds = 3
""",
        encoding="utf-8",
    )
    suite = load_suite(str(suite_file), registry=registry)
    record, _ = run_suite(suite, registry=registry, results_dir=tmp_path / "r", progress=False)
    return record


def test_augmented_run_counts_source_images(tmp_path, registry):
    record = _run(
        tmp_path,
        registry,
        'dataset = "synthetic"\noptions = { n_per_class = 12, size = 64 }',
        '[augment]\nscheme = "loey2020"\ncopies = 3',
    )
    assert record["dataset"]["unit"] == "source image" and record["dataset"]["groups"] is None
    for cell in record["cells"]:
        m = cell["metrics"]
        assert (m["unit"], m["n_units"], m["n_predictions"]) == ("source image", 24, 72)
        # what report-side recomputation gives from the stored record is what the run stored
        again = cell_metrics_over_units(cell, record["dataset"])
        assert again["ci"] == pytest.approx(m["ci"], nan_ok=True)
        assert again["pooled"] == pytest.approx(m["pooled"], nan_ok=True)
    knn, lda = record["cells"]
    assert compare_methods(knn, lda, record["dataset"])["n_units"] == 24


def test_manifest_groups_make_patients_the_unit(tmp_path, registry):
    rng = np.random.default_rng(0)
    rows = ["path,label,group"]
    for i in range(24):
        label = ("healthy", "leukemia")[i % 2]
        pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        pixels[..., i % 2] = 200  # a learnable colour cue
        Image.fromarray(pixels).save(tmp_path / f"img{i:02d}.png")
        rows.append(f"img{i:02d}.png,{label},patient-{i // 6}-{label}")  # 3 images per patient
    (tmp_path / "cells.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    record = _run(tmp_path, registry, f'dataset = "manifest"\npath = "{tmp_path / "cells.csv"}"')
    ds = record["dataset"]
    assert ds["unit"] == "patient" and len(set(ds["groups"])) == 8
    assert ds["groups"][0] == "patient-0-healthy"
    for cell in record["cells"]:
        assert (cell["metrics"]["unit"], cell["metrics"]["n_units"]) == ("patient", 8)
        assert cell["metrics"]["n_predictions"] == 24
