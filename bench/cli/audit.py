"""``leukobench audit``: duplicates, acquisition shortcuts, source confounding and leakage of a
dataset, before anyone trains on it (docs/audit.md)."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from bench.cli.common import CACHE_DIR_HELP, add_no_progress, add_skip_bad, load_imageset
from bench.errors import UserError

FORMAT_BY_SUFFIX = {".json": "json", ".md": "md", ".html": "html", ".htm": "html"}
LEVELS = ("ok", "warn", "fail")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="audit a dataset: duplicates, acquisition shortcuts, source check, leakage",
        description="Find duplicates, acquisition shortcuts (labels predictable from file "
        "properties), source confounding (--against) and split leakage in a dataset, before "
        "anyone trains on it. See docs/audit.md.",
    )
    p.add_argument("data", metavar="DATA", help="dataset folder or manifest CSV")
    p.add_argument(
        "--dataset",
        default="auto",
        metavar="KIND",
        help="dataset plugin of DATA (default auto: manifest for a .csv, else imagefolder)",
    )
    p.add_argument(
        "--against",
        nargs="+",
        default=[],
        metavar="DATA2",
        help="other dataset(s) to tell apart from DATA (source check); same-named classes "
        "are compared, else everything",
    )
    p.add_argument(
        "--against-dataset", default="auto", metavar="KIND", help="dataset plugin of DATA2"
    )
    p.add_argument(
        "--backbone",
        default="efficientnet_lite0",
        help="backbone for the feature tests (default efficientnet_lite0; 'none' skips them)",
    )
    p.add_argument("--format", choices=("rich", "md", "json", "html"), help="output format")
    p.add_argument("--out", type=Path, help="write the report here (format from its suffix)")
    p.add_argument(
        "--fail-on", choices=("warn", "fail"), help="exit 1 when a finding reaches this level"
    )
    p.add_argument("--folds", type=int, default=5, help="grouped k-fold of every test (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of folds and bootstrap")
    p.add_argument(
        "--augment",
        default=None,
        help="augmentation scheme for the leakage delta (none, loey2020); default: the "
        "suite's, else none",
    )
    p.add_argument("--copies", type=int, default=None, help="copies per image with --augment")
    p.add_argument(
        "--suite", type=Path, help="take the augmentation ([augment]) from this suite file"
    )
    p.add_argument(
        "--phash-distance",
        type=int,
        default=None,
        help="max pHash Hamming distance of a near-duplicate (of 64 bits, default 6)",
    )
    p.add_argument(
        "--feature-similarity",
        type=float,
        default=None,
        help="also list pairs whose backbone features have cosine similarity >= this",
    )
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, mps")
    p.add_argument("--cache-dir", type=Path, help=CACHE_DIR_HELP)
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    add_skip_bad(p)
    add_no_progress(p)
    p.set_defaults(func=run)


def dataset_kind(kind: str, data: str) -> str:
    """``auto`` -> ``manifest`` for a ``.csv`` file, else ``imagefolder``."""
    if kind != "auto":
        return kind
    return "manifest" if Path(data).suffix.lower() == ".csv" else "imagefolder"


def suite_augmentation(path: Path) -> tuple[str, int]:
    """``(scheme, copies)`` of a suite file's ``[augment]`` table (``("none", 1)`` without)."""
    if not path.is_file():
        raise UserError(f"--suite {path}: file not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"--suite {path}: not a readable TOML file ({exc})") from exc
    if "protocol" in data:  # a whole suite: checked as `run` checks it, typos included
        from bench.suite import load_suite

        aug = load_suite(str(path)).config["augment"]
        return str(aug["scheme"]), int(aug["copies"])
    aug = data.get("augment") or {}
    if not isinstance(aug, dict):
        raise UserError(f"--suite {path}: [augment] must be a table")
    from bench.registry import suggest

    for key in aug:
        if key not in ("scheme", "copies"):
            hint = suggest(key, ("scheme", "copies")) or " (keys: scheme, copies)"
            raise UserError(f"--suite {path}: augment.{key}: unknown key{hint}")
    return str(aug.get("scheme", "none")), int(aug.get("copies", 5))


def output_format(args: argparse.Namespace) -> str:
    """The chosen format: --format, else --out's suffix, else rich on a terminal, md otherwise."""
    if args.format:
        return args.format
    if args.out is not None:
        fmt = FORMAT_BY_SUFFIX.get(args.out.suffix.lower())
        if fmt is None:
            raise UserError(
                f"--out {args.out}: cannot tell the format from the suffix; "
                "use .json, .md or .html, or give --format"
            )
        return fmt
    return "rich" if sys.stdout.isatty() else "md"


def run(args: argparse.Namespace) -> int:
    from bench.atomic import atomic_write_text
    from bench.audit.pipeline import AuditInput, AuditOptions, run_audit
    from bench.audit.render import render
    from bench.data.augment import SCHEMES

    fmt = output_format(args)
    if args.folds < 2:
        raise UserError(f"--folds must be >= 2, got {args.folds}")
    scheme, copies = ("none", 5)
    if args.suite is not None:
        scheme, copies = suite_augmentation(args.suite)
    if args.augment is not None:
        scheme = args.augment
    if args.copies is not None:
        copies = args.copies
    if scheme not in SCHEMES:
        raise UserError(f"--augment {scheme!r}: unknown scheme; known: {', '.join(SCHEMES)}")
    if not 1 <= copies <= 100:
        raise UserError(f"--copies must be in 1..100 (as a suite's augment.copies), got {copies}")
    if not 0 <= args.seed < 2**32:
        raise UserError(f"--seed must be in 0..{2**32 - 1}, got {args.seed}")
    similarity = args.feature_similarity
    if similarity is not None and not -1.0 <= similarity <= 1.0:  # also refuses NaN
        raise UserError(f"--feature-similarity is a cosine similarity in [-1, 1], got {similarity}")
    if scheme != "none" and copies == 1:
        scheme = "none"
    backbone = None if args.backbone.lower() == "none" else args.backbone
    kind = dataset_kind(args.dataset, args.data)
    data = AuditInput(load_imageset(kind, args.data), kind, args.data)
    against = []
    for other in args.against:
        okind = dataset_kind(args.against_dataset, other)
        against.append(AuditInput(load_imageset(okind, other, flag="--against"), okind, other))
    opts = AuditOptions(
        backbone=backbone,
        folds=args.folds,
        seed=args.seed,
        augment=scheme,
        copies=copies,
        skip_bad=args.skip_bad,
        feature_similarity=args.feature_similarity,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        device=args.device,
        progress=not args.no_progress,
    )
    if args.phash_distance is not None:
        if not 0 <= args.phash_distance <= 64:
            raise UserError(f"--phash-distance must be in 0..64, got {args.phash_distance}")
        opts.phash_distance = args.phash_distance
    report = run_audit(data, against, opts)
    text = render(report, fmt)
    if args.out is not None:
        atomic_write_text(args.out, text)
        print(f"audit of {report['dataset']['name']}: {report['level']} -> {args.out}",
              file=sys.stderr)  # fmt: skip
    else:
        sys.stdout.write(text)
    if args.fail_on and LEVELS.index(report["level"]) >= LEVELS.index(args.fail_on):
        return 1
    return 0
