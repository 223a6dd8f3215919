"""Declarative suite files (TOML) -> a validated configuration and a plan of cells.

The schema is documented in ``docs/suites.md``. Validation happens before any
work: unknown keys and plugin names fail with close-match suggestions, wrong
types name the expected type, the file and the key path.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import tomllib
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.registry import Registry, suggest
from bench.suite_overrides import TOP_LEVEL, apply_override, non_finite, parse_override

# key -> (expected type(s), allowed values or None)
_STR, _INT, _FLOAT, _BOOL, _LIST, _DICT = str, int, (int, float), bool, list, dict

SCHEMA: dict[str, dict[str, tuple[Any, tuple | None]]] = {
    "suite": {
        "name": (_STR, None),
        "description": (_STR, None),
        "seed": (_INT, None),
        "seeds": (_LIST, None),
        "results_dir": (_STR, None),
    },
    "data": {
        "dataset": (_STR, None),
        "name": (_STR, None),
        "path": (_STR, None),
        "options": (_DICT, None),
        "skip_bad": (_BOOL, None),
        "balance": (_STR, ("none", "undersample")),
        "mask": (_LIST, None),
        "max_pixels": (_INT, None),
    },
    "augment": {
        "scheme": (_STR, ("none", "loey2020")),
        "copies": (_INT, None),
    },
    "run": {
        "device": (_STR, None),
        "batch_size": (_INT, None),
        "workers": (_INT, None),
        "n_jobs": (_INT, None),
        "cache": (_BOOL, None),
        "decoder": (_STR, None),
        "executor": (_STR, None),
        "memory_limit": ((str, int), None),
        "track": (_LIST, None),
        "tracking_uri": (_STR, None),
        "tracking_experiment": (_STR, None),
        "ray_address": (_STR, None),
    },
}
# Keys of the resolved configuration that say how to run, not what: left out of the digest,
# so the same suite run by another executor resumes the same work and names the same runs.
DIGEST_IGNORES: tuple[tuple[str, str], ...] = (
    ("run", "executor"),
    ("run", "memory_limit"),
    ("run", "ray_address"),
    ("run", "track"),
    ("run", "tracking_uri"),
    ("run", "tracking_experiment"),
)

# Whole-number settings outside the protocol tables: (section, key) -> (lowest, highest).
# Anything outside is a typo or an accident (10**9 workers, a seed sklearn cannot take).
RANGES: dict[tuple[str, str], tuple[int, int]] = {
    ("data", "max_pixels"): (1, 10**12),
    ("augment", "copies"): (1, 100),
    ("run", "batch_size"): (0, 65_536),
    ("run", "workers"): (0, 1_024),
    ("run", "n_jobs"): (-1, 1_024),
}
SEED_RANGE = (0, 2**32 - 1)  # numpy, torch and scikit-learn all accept these
#: A suite name names result files and folders: no path separators, no leading dot.
SUITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")

DEFAULTS: dict[str, dict[str, Any]] = {
    "suite": {"description": "", "seed": 0, "results_dir": "results"},
    "data": {
        "options": {},
        "skip_bad": False,
        "balance": "none",
        "mask": [],
        "max_pixels": 89_478_485,
    },
    "augment": {"scheme": "none", "copies": 1},
    "run": {
        "device": "auto",
        "batch_size": 0,
        "workers": 2,
        "n_jobs": 2,
        "cache": True,
        "decoder": "pil",
        "memory_limit": "auto",
    },
}

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


def _type_name(t: Any) -> str:
    if isinstance(t, tuple):
        return "a number"
    return _TYPE_NAMES.get(t, t.__name__)


@dataclass(frozen=True)
class Cell:
    """One unit of work: a protocol x backbone x classifier x seed."""

    protocol_index: int
    kind: str
    backbone: str
    classifier: str  # "finetune" for Model 2
    seed: int

    @property
    def id(self) -> str:
        return (
            f"{self.kind}|{self.backbone}|{self.classifier}|seed={self.seed}|p{self.protocol_index}"
        )


@dataclass
class Suite:
    """A validated suite: its resolved configuration and where it came from."""

    config: dict[str, Any]
    path: Path | None
    source_sha256: str
    base_dir: Path = field(default_factory=Path.cwd)

    @property
    def name(self) -> str:
        return self.config["suite"]["name"]

    @property
    def seeds(self) -> list[int]:
        return list(self.config["suite"]["seeds"])

    @property
    def protocols(self) -> list[dict[str, Any]]:
        return self.config["protocol"]

    def digest(self) -> str:
        """Digest of the resolved configuration (names runs, keys resumable work).

        Keys of :data:`DIGEST_IGNORES` (how to run, e.g. the executor) are left out.
        """
        config = self.config
        if any(key in config.get(section, {}) for section, key in DIGEST_IGNORES):
            config = copy.deepcopy(config)
            for section, key in DIGEST_IGNORES:
                config.get(section, {}).pop(key, None)
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()

    def backbone_options(self, name: str) -> dict[str, Any]:
        return dict(self.config["backbone"].get(name, {}))

    def classifier_options(self, name: str) -> dict[str, Any]:
        return dict(self.config["classifier"].get(name, {}))

    def data_path(self) -> Path | None:
        path = self.config["data"].get("path")
        if not path:
            return None
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    def cells(self, registry: Registry | None = None) -> list[Cell]:
        """Every cell, in run order (seed, then table), as each table's protocol yields them."""
        if registry is None:
            from bench.registry import get_registry

            registry = get_registry()
        out = []
        for seed in self.seeds:
            for i, proto in enumerate(self.protocols):
                out.extend(registry.protocol(proto["kind"]).factory().cells(proto, i, seed))
        return out


# -- locating ------------------------------------------------------------------
def builtin_suites() -> dict[str, Path]:
    """Shipped suites by name (``suites/*.toml``)."""
    root = resources.files("suites")
    return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir() if str(p).endswith(".toml")}


def locate(name_or_path: str) -> Path:
    """A suite file from a path or a shipped suite's name."""
    p = Path(name_or_path).expanduser()
    if p.suffix == ".toml" or p.exists():
        if p.is_dir():
            raise UserError(f"suite file {p} is a folder; give a .toml suite file or a suite name")
        if not p.is_file():
            raise UserError(f"suite file {p} not found")
        return p
    shipped = builtin_suites()
    if name_or_path in shipped:
        return shipped[name_or_path]
    hint = suggest(name_or_path, shipped) or f" (shipped suites: {', '.join(sorted(shipped))})"
    raise UserError(f"unknown suite {name_or_path!r}{hint}")


class _Checker:
    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, message: str) -> UserError:
        return UserError(f"{self.where}: {key}: {message}")

    def table(self, section: str, key_path: str, table: Any) -> dict[str, Any]:
        if not isinstance(table, dict):
            raise self.fail(key_path, "expected a table")
        schema = SCHEMA[section]
        for key, value in table.items():
            path = f"{key_path}.{key}"
            if key not in schema:
                hint = suggest(key, schema) or f" (allowed: {', '.join(schema)})"
                raise self.fail(path, f"unknown key{hint}")
            expected, allowed = schema[key]
            ok = isinstance(value, expected) and not (
                isinstance(value, bool) and expected in (int, (int, float))
            )
            if not ok:
                raise self.fail(path, f"expected {_type_name(expected)}, got {value!r}")
            if allowed and value not in allowed:
                hint = suggest(str(value), allowed) or f" (allowed: {', '.join(allowed)})"
                raise self.fail(path, f"{value!r} is not allowed{hint}")
        return table


def validate(raw: dict[str, Any], where: str, registry: Registry | None = None) -> dict[str, Any]:
    """Check ``raw`` against the schema and the registry; return the resolved config."""
    check = _Checker(where)
    for key in raw:
        if key not in TOP_LEVEL:
            hint = suggest(key, TOP_LEVEL) or f" (allowed: {', '.join(TOP_LEVEL)})"
            raise check.fail(key, f"unknown table{hint}")
    cfg: dict[str, Any] = {}
    for section in ("suite", "data", "augment", "run"):
        given = check.table(section, section, raw.get(section, {}))
        cfg[section] = {**copy.deepcopy(DEFAULTS.get(section, {})), **copy.deepcopy(given)}

    suite = cfg["suite"]
    if "name" not in suite:  # from the file name, made safe for file names
        stem = re.sub(r"[^A-Za-z0-9._+-]+", "-", Path(where).stem).lstrip(".-")
        suite["name"] = stem[:100] or "suite"
    if not SUITE_NAME.fullmatch(suite["name"]):
        raise check.fail(
            "suite.name",
            f"{suite['name']!r} cannot name result files: use 1-100 letters, digits, "
            "'.', '_', '+' or '-', starting with a letter or digit (e.g. 'my-study')",
        )
    if len(set(suite.get("seeds") or [])) != len(suite.get("seeds") or []):
        raise check.fail("suite.seeds", f"{suite['seeds']} repeats a seed; list each seed once")
    seeds = suite.pop("seeds", None)
    if seeds is None:
        seeds = [suite["seed"]]
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise check.fail("suite.seeds", "expected a non-empty list of integers")
    lo, hi = SEED_RANGE
    for s in seeds:
        if not lo <= s <= hi:
            raise check.fail("suite.seeds", f"{s} is out of range; seeds are {lo}..{hi}")
    suite["seeds"] = seeds
    suite["seed"] = seeds[0]

    data = cfg["data"]
    if "dataset" not in data:
        raise check.fail("data.dataset", "missing (a dataset plugin name, e.g. 'imagefolder')")
    _check_mask(check, data["mask"])

    aug = cfg["augment"]
    if aug["scheme"] == "none":
        aug["copies"] = 1
    elif "copies" not in raw.get("augment", {}):
        aug["copies"] = 5
    _check_numbers(check, cfg)

    from bench.data.decode import DECODERS
    from bench.memory_budget import parse_memory_limit

    parse_memory_limit(cfg["run"]["memory_limit"], key=f"{where}: run.memory_limit")
    from bench.device import check_device_name

    check_device_name(cfg["run"]["device"], f"{where}: run.device")
    if cfg["run"]["decoder"] not in DECODERS:
        hint = suggest(cfg["run"]["decoder"], DECODERS) or f" (choose from {', '.join(DECODERS)})"
        raise check.fail("run.decoder", f"unknown decoder {cfg['run']['decoder']!r}{hint}")

    protocols = raw.get("protocol")
    if not protocols:
        raise check.fail("protocol", "missing: add at least one [[protocol]] table")
    if not isinstance(protocols, list):
        raise check.fail("protocol", "expected an array of tables: write [[protocol]]")
    if registry is None:
        from bench.registry import get_registry

        registry_for_kinds = get_registry()
    else:
        registry_for_kinds = registry
    cfg["protocol"] = [
        _protocol(check, f"protocol[{i}]", p, registry_for_kinds, registry)
        for i, p in enumerate(protocols)
    ]
    if "executor" in cfg["run"] and registry is not None:
        try:
            registry.executor(cfg["run"]["executor"])
        except UserError as exc:
            raise check.fail("run.executor", str(exc)) from None

    for kind in ("backbone", "classifier"):
        table = raw.get(kind, {})
        if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
            raise check.fail(kind, f"expected tables like [{kind}.NAME] with options")
        cfg[kind] = copy.deepcopy(table)

    if registry is not None:
        _check_names(check, cfg, registry)
    return cfg


def _check_numbers(check: _Checker, cfg: dict[str, Any]) -> None:
    """Whole-number settings within :data:`RANGES`; no NaN/inf in the dataset's options."""
    for (section, key), (lo, hi) in RANGES.items():
        value = cfg[section].get(key)
        if value is not None and not lo <= value <= hi:
            raise check.fail(f"{section}.{key}", f"{value} is out of range; use {lo}..{hi}")
    bad = non_finite(cfg["data"]["options"])
    if bad:
        raise check.fail(f"data.options.{bad}", "NaN or infinite; give a finite number")


def _check_mask(check: _Checker, mask: list) -> None:
    for i, rect in enumerate(mask):
        ok = (
            isinstance(rect, list)
            and len(rect) == 4
            and all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in rect)
            and rect[0] < rect[2]
            and rect[1] < rect[3]
        )
        if not ok:
            raise check.fail(
                f"data.mask[{i}]",
                f"expected [x0, y0, x1, y1] in relative coordinates 0..1, got {rect!r}",
            )


def _protocol(
    check: _Checker, where: str, proto: Any, kinds: Registry, registry: Registry | None
) -> dict[str, Any]:
    """One ``[[protocol]]`` table, checked and resolved by the protocol its ``kind`` names."""
    if not isinstance(proto, dict):
        raise check.fail(where, "expected a table")
    if "kind" not in proto:
        known = ", ".join(repr(k) for k in kinds.protocols)
        raise check.fail(f"{where}.kind", f"missing (a protocol name: {known})")
    kind = proto["kind"]
    if not isinstance(kind, str):
        raise check.fail(f"{where}.kind", f"expected a string, got {kind!r}")
    if kind not in kinds.protocols:
        known = list(kinds.protocols)
        hint = suggest(kind, known) or f" (allowed: {', '.join(known)})"
        raise check.fail(f"{where}.kind", f"{kind!r} is not allowed{hint}")
    protocol = kinds.protocol(kind).factory()
    return protocol.validate(proto, f"{check.where}: {where}", registry)


def _check_names(check: _Checker, cfg: dict[str, Any], registry: Registry) -> None:
    try:
        registry.dataset(cfg["data"]["dataset"])
    except UserError as exc:
        raise check.fail("data.dataset", str(exc)) from None
    used_b: set[str] = set()
    used_c: set[str] = set()
    for kind in ("backbone", "classifier"):
        for name, options in cfg[kind].items():
            bad = non_finite(options)
            if bad:
                raise check.fail(f"{kind}.{name}.{bad}", "NaN or infinite; give a finite number")
    for i, proto in enumerate(cfg["protocol"]):
        for name in proto.get("backbones", []):
            try:
                spec, extra = registry.backbone(name)
            except UserError as exc:
                raise check.fail(f"protocol[{i}].backbones", str(exc)) from None
            if name not in used_b:
                _check_backbone_options(
                    check, name, spec, {**extra, **cfg["backbone"].get(name, {})}
                )
            used_b.add(name)
        for name in proto.get("classifiers", []):
            try:
                registry.classifier(name)
            except UserError as exc:
                raise check.fail(f"protocol[{i}].classifiers", str(exc)) from None
            used_c.add(name)
    # Classifier options are checked now (building an estimator is cheap), not after extraction.
    for name in used_c:
        try:
            registry.build_classifier(name, **cfg["classifier"].get(name, {}))
        except UserError as exc:
            raise check.fail(f"classifier.{name}", str(exc)) from None
    # Options for a name no protocol uses are accepted with a warning naming the table
    # (protocols may be overridden), but a name no plugin knows is a typo.
    for kind, used in (("backbone", used_b), ("classifier", used_c)):
        for name in cfg[kind]:
            if name in used:
                continue
            try:
                registry.backbone(name) if kind == "backbone" else registry.classifier(name)
            except UserError as exc:
                raise check.fail(f"{kind}.{name}", str(exc)) from None
            warnings.warn(
                f"{check.where}: [{kind}.{name}]: options given, but no protocol uses {kind} {name!r}; they are ignored",
                stacklevel=3,
            )


def _check_backbone_options(check: _Checker, name: str, spec: Any, options: dict[str, Any]) -> None:
    """Cheap checks of a backbone's options before any work: option names against the
    factory's parameters, then the spec's own ``validate(options)`` (no weights loaded)."""
    import inspect

    try:
        params = inspect.signature(spec.factory).parameters.values()
    except (TypeError, ValueError):
        params = ()
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if params and not any(p.kind is p.VAR_KEYWORD for p in params):
        for key in options:
            if key not in names:
                known = sorted(names - {"model_name"})
                hint = suggest(key, known) or f" (options: {', '.join(known) or 'none'})"
                raise check.fail(f"backbone.{name}.{key}", f"unknown option{hint}")
    validate_options = getattr(spec, "validate", None)
    if validate_options is not None:
        try:
            validate_options(dict(options))
        except UserError as exc:
            raise check.fail(f"backbone.{name}", str(exc)) from None


def load_suite(
    name_or_path: str,
    *,
    overrides: list[str] = (),
    data_path: str | None = None,
    registry: Registry | None = None,
) -> Suite:
    """Read, override (``--set``, ``--data``) and validate a suite."""
    path = locate(name_or_path)
    text = path.read_bytes()
    try:
        raw = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    for item in overrides:
        keys, value = parse_override(item)
        apply_override(raw, keys, value)
    base_dir = path.parent.resolve()
    if data_path is not None:
        raw.setdefault("data", {})["path"] = str(Path(data_path).expanduser().resolve())
    cfg = validate(raw, str(path), registry)
    return Suite(cfg, path, hashlib.sha256(text).hexdigest(), base_dir)
