"""docs/api.md: every Python snippet runs as written, in order, in an empty folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_page_has_snippets_for_every_stable_name():
    import bench

    text = DOC.read_text(encoding="utf-8")
    for name in bench.__all__:
        if name != "__version__":
            assert f"bench.{name}" in text or f"`{name}`" in text, name
    assert len(snippets()) >= 8


@pytest.mark.slow
def test_api_snippets_run_as_written(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the tracking snippet needs the [mlflow] extra")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, code in enumerate(snippets()):
        try:
            exec(compile(code, f"docs/api.md snippet {i + 1}", "exec"), namespace)
        except Exception as exc:  # name the snippet that broke
            raise AssertionError(f"docs/api.md snippet {i + 1} failed: {exc!r}\n{code}") from exc
    assert (tmp_path / "results").is_dir() and (tmp_path / "mlflow.db").exists()


def test_names_are_stable():
    import bench
    import bench.api

    assert set(bench.__all__) - {"__version__"} == set(bench.api.__all__)
    for name in bench.api.__all__:
        assert getattr(bench, name) is getattr(bench.api, name)
    with pytest.raises(AttributeError):
        bench.no_such_name  # noqa: B018
