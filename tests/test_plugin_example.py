"""docs/plugins.md's example is complete: copied into a package, pip-installed, checked, run.

The package is installed with ``pip install --target`` into a temporary folder
(not into the running environment) and found through ``PYTHONPATH``, so its entry
point is discovered exactly as an installed plugin's is; removing the folder
uninstalls it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def files_from_doc() -> dict[str, str]:
    """Code blocks whose first line is ``# <relative file name>``."""
    out = {}
    for block in re.findall(r"```(?:python|toml)\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S):
        first, _, body = block.partition("\n")
        name = first.removeprefix("#").strip()
        if name.endswith((".py", ".toml")) and " " not in name:
            out[name] = block
    return out


@pytest.mark.slow
def test_documented_plugin_installs_passes_the_kit_and_runs_a_suite(tmp_path):
    setuptools = pytest.importorskip("setuptools")
    if tuple(int(x) for x in setuptools.__version__.split(".")[:2]) < (70, 1):
        pytest.skip(f"setuptools {setuptools.__version__} cannot build offline (needs >= 70.1)")
    files = files_from_doc()
    assert {"my_package/leukobench_plugin.py", "pyproject.toml", "tests/test_my_plugin.py"} <= set(
        files
    )
    pkg = tmp_path / "pkg"
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text, encoding="utf-8")
    (pkg / "my_package" / "__init__.py").write_text("")
    site = tmp_path / "site"
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(site),
            str(pkg),
        ],
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    assert list(site.glob("my_leukobench_plugin-*.dist-info/entry_points.txt"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), *sys.path]),
        "LEUKOBENCH_CACHE": str(tmp_path / "cache"),
    }

    listed = subprocess.run(
        [sys.executable, "-m", "bench", "list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert listed.returncode == 0 and "tiny-net" in listed.stdout and "extra-trees" in listed.stdout

    kit = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(pkg / "tests" / "test_my_plugin.py"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=pkg,
    )
    assert kit.returncode == 0, kit.stdout[-3000:]
    assert "2 passed" in kit.stdout

    suite = tmp_path / "suite.toml"
    suite.write_text(
        '[suite]\nname = "plugin-example"\n'
        '[data]\ndataset = "synthetic"\noptions = { n_per_class = 6, size = 64 }\n'
        '[[protocol]]\nkind = "features"\nbackbones = ["tiny-net"]\n'
        'classifiers = ["extra-trees", "lda"]\nfolds = 2\n'
    )
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "run",
            str(suite),
            "--no-progress",
            "--results-dir",
            str(tmp_path / "results"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    record = json.loads(next((tmp_path / "results").glob("*.json")).read_text())
    assert record["status"] == "complete"
    assert {c["classifier"] for c in record["cells"]} == {"extra-trees", "lda"}
    assert all(c["backbone"] == "tiny-net" for c in record["cells"])

    import shutil

    shutil.rmtree(site)  # uninstalled: the names are gone
    gone = subprocess.run(
        [sys.executable, "-m", "bench", "list"],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": os.pathsep.join(sys.path)},
        cwd=tmp_path,
    )
    assert "tiny-net" not in gone.stdout
