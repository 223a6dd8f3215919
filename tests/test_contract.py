"""The plugin contract is documented and the code has no import cycles."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from bench import hookspecs
from bench.registry import get_registry

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _hooks() -> list[str]:
    return [n for n in dir(hookspecs) if n.startswith("leukobench_")]


def test_every_hook_has_a_docstring_and_is_in_the_docs():
    text = (DOCS / "plugins.md").read_text() + (DOCS / "DESIGN.md").read_text()
    assert _hooks()
    for name in _hooks():
        assert (inspect.getdoc(getattr(hookspecs, name)) or "").strip(), name
        assert name in text, f"{name} is not mentioned in docs/plugins.md or docs/DESIGN.md"


def test_every_protocol_setting_is_described_and_builtins_are_in_the_docs():
    suites_md = (DOCS / "suites.md").read_text()
    registry = get_registry()
    assert {"features", "finetune"} <= set(registry.protocols)
    for name, spec in registry.protocols.items():
        proto = spec.factory()
        assert proto.name == name and proto.description
        for setting in (*proto.table_keys, *proto.settings):
            assert setting.description.strip(), f"{name}: {setting.name} has no description"
        if spec.plugin not in ("features", "finetune"):
            continue
        assert f'`kind = "{name}"`' in suites_md
        for setting in proto.table_keys:
            assert f"| `{setting.name}` |" in suites_md, (name, setting.name)
        for setting in proto.settings:
            assert f"| `settings.{setting.name}` |" in suites_md, (name, setting.name)


def _modules(roots: list[str]) -> dict[str, Path]:
    mods = {}
    for root in roots:
        for path in (ROOT / root).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def test_no_import_cycles():
    """Every import counts (also inside functions); importing one's own parent package does not."""
    mods = _modules(["bench", "plugins"])

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for target in targets:
                dep = resolve(target)
                if dep and dep != mod and not mod.startswith(dep + "."):
                    graph[mod].add(dep)
    cycles = _cycles(graph)
    # bench.features <-> bench.gpu_pipeline is being split into bench/extraction/ (issue 14.4)
    cycles = [c for c in cycles if set(c) != {"bench.features", "bench.gpu_pipeline"}]
    assert not cycles, cycles


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on, stack, out = set(), [], []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
