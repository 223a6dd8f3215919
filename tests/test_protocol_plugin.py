"""A throwaway protocol plugin (docs/plugins.md's majority-class example, run as written).

Registered in a test: validated, listed, planned by --dry-run, run by `leukobench
run`, shown in Table 1 and by `compare`, then unregistered.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import UserError
from bench.registry import get_registry
from bench.suite import load_suite

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def _blocks(lang: str) -> list[str]:
    text = DOCS.read_text(encoding="utf-8").split("## Writing a protocol", 1)[1]
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


@pytest.fixture
def majority(tmp_path):
    """The documented plugin module, registered on the process registry (then removed)."""
    source = tmp_path / "majority_plugin.py"
    source.write_text(_blocks("python")[0])
    spec = importlib.util.spec_from_file_location("majority_plugin", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules["majority_plugin"] = module
    spec.loader.exec_module(module)
    registry = get_registry()
    registry.register(module, name="majority")
    suite = tmp_path / "majority-demo.toml"
    suite.write_text(_blocks("toml")[-1])
    yield suite
    registry.unregister("majority")
    sys.modules.pop("majority_plugin", None)
    assert "majority" not in registry.protocols


def test_documented_protocol_plugin_end_to_end(majority, tmp_path, capsys):
    results = tmp_path / "results"
    # validated: a typo in its table is exit 2 naming the key, with a suggestion
    with pytest.raises(UserError, match=r"protocol\[0\]\.fold: unknown key; did you mean 'folds'"):
        load_suite(str(majority), overrides=["protocol.0.fold=3"], registry=get_registry())
    # listed with its plugin and settings
    assert main(["list", "protocols"]) == 0
    out = capsys.readouterr().out
    assert "majority" in out and "folds (int, default 5, >= 2)" in out
    # planned
    assert main(["run", str(majority), "--dry-run"]) == 0
    assert "majority class" in capsys.readouterr().out
    # run, shown in Table 1
    args = ["run", str(majority), "--results-dir", str(results), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Baseline" in out and "majority class" in out
    (record,) = results.glob("*.json")
    cell = json.loads(record.read_text())["cells"][0]
    assert cell["id"] == "majority|-|majority|seed=0|p0" and cell["model"] == "Baseline"
    assert abs(cell["metrics"]["pooled"]["accuracy"] - 0.5) < 0.26
    # report and compare read it through the protocol
    assert main(["report", str(record), "--format", "md"]) == 0
    assert "majority class" in capsys.readouterr().out
    assert main(["compare", str(record), str(record)]) == 0
    assert "majority class" in capsys.readouterr().out


def test_unknown_protocol_kind_suggests(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text(
        '[data]\ndataset = "synthetic"\n[[protocol]]\nkind = "finetun"\nbackbones = ["x"]\n'
    )
    with pytest.raises(UserError, match=r"s\.toml: protocol\[0\]\.kind: .*did you mean 'finetune'"):
        load_suite(str(suite), registry=get_registry())
