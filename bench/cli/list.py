"""``leukobench list``: the registered backbones, classifiers, datasets, protocols, executors,
trackers, suites and plugins."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from bench.cli.common import make_console

KINDS = (
    "backbones",
    "classifiers",
    "datasets",
    "protocols",
    "executors",
    "trackers",
    "suites",
    "plugins",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list",
        help="list backbones, classifiers, datasets, protocols, executors, trackers, suites, "
        "plugins",
    )
    p.add_argument("kind", nargs="?", choices=KINDS, help="what to list (default: all)")
    p.set_defaults(func=run)


def _dim(value: object) -> str:
    return "-" if value in (None, "") else str(value)


def _named(title: str, specs: dict) -> Table:
    """A name / description / plugin table of ``specs``."""
    t = Table(title=escape(title))
    t.add_column("name", no_wrap=True)
    for col in ("description", "plugin"):
        t.add_column(col)
    for name, s in specs.items():
        t.add_row(name, escape(s.description), s.plugin)
    return t


def tables(kind: str) -> Table:
    from bench.registry import get_registry
    from bench.suite import builtin_suites

    reg = get_registry()
    if kind == "backbones":
        t = Table(title="Backbones")
        t.add_column("name", no_wrap=True)
        for col in ("description", "plugin", "input", "feature dim", "weights"):
            t.add_column(col)
        for name, s in reg.backbones.items():
            shown = f"{name}/<model>" if s.family else name
            t.add_row(
                shown,
                s.description,
                s.plugin,
                _dim(s.input_size),
                _dim(s.feature_dim),
                _dim(s.weight_source),
            )
    elif kind == "classifiers":
        t = Table(title="Classifiers")
        t.add_column("name", no_wrap=True)
        for col in ("Table 1 label", "description", "plugin", "in paper", "approximates"):
            t.add_column(col)
        for name, s in reg.classifiers.items():
            paper = "yes" if s.in_paper else ""
            t.add_row(name, s.paper_label, s.description, s.plugin, paper, s.approximates)
    elif kind == "datasets":
        t = Table(title="Datasets")
        t.add_column("name", no_wrap=True)
        for col in ("description", "plugin", "needs path"):
            t.add_column(col)
        for name, s in reg.datasets.items():
            t.add_row(name, s.description, s.plugin, "yes" if s.needs_path else "no")
    elif kind == "protocols":
        t = Table(title=escape("Protocols ([[protocol]] kind = NAME)"))
        t.add_column("name", no_wrap=True)
        for col in ("description", "plugin", "table keys and settings"):
            t.add_column(col)
        for name, s in reg.protocols.items():
            proto = s.factory()
            lines = [f"{x.describe()}" for x in proto.table_keys]
            lines += [f"settings.{x.describe()}" for x in proto.settings]
            t.add_row(
                name, escape(s.description or proto.description), s.plugin, escape("\n".join(lines))
            )
    elif kind == "executors":
        t = _named("Executors ([run] executor = NAME, or --executor NAME)", reg.executors)
    elif kind == "trackers":
        t = _named("Trackers ([run] track = [NAME], or --track NAME)", reg.trackers)
    elif kind == "suites":
        import tomllib

        t = Table(title="Shipped suites (leukobench run NAME)")
        t.add_column("name", no_wrap=True)
        for col in ("description", "file"):
            t.add_column(col)
        for name, path in sorted(builtin_suites().items()):
            try:
                desc = tomllib.loads(path.read_text()).get("suite", {}).get("description", "")
            except (OSError, tomllib.TOMLDecodeError):
                desc = "(unreadable)"
            t.add_row(name, desc, path.name)
    else:
        t = Table(title="Plugins (entry-point group 'leukobench')")
        t.add_column("name")
        t.add_column("module")
        for name, plugin in sorted(reg.pm.list_name_plugin()):
            if plugin is None:  # blocked (LEUKOBENCH_PLUGINS / LEUKOBENCH_DISABLE_PLUGINS)
                continue
            t.add_row(name, getattr(plugin, "__name__", repr(plugin)))
    return t


def run(args: argparse.Namespace) -> int:
    console = make_console()
    for kind in [args.kind] if args.kind else KINDS:
        console.print(tables(kind))
    return 0
