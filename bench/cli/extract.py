"""``leukobench extract``: features of a dataset with one backbone, written to an ``.npz``."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench import strict_json
from bench.cli.common import (
    add_cache_options,
    add_dataset,
    add_no_progress,
    add_skip_bad,
    data_path,
    load_imageset,
    output_file,
    positive_int,
)
from bench.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract",
        help="extract backbone features of a dataset into an .npz (cached)",
        description="Extract features with one backbone. Output .npz holds features, labels, "
        "groups, digests, paths, classes and a JSON 'meta' (backbone, weights, preprocessing).",
    )
    p.add_argument("--backbone", required=True, help="backbone name, e.g. alexnet, timm/resnet18")
    p.add_argument(
        "--data", required=True, type=lambda t: Path(data_path(t)), help="dataset folder or file"
    )
    add_dataset(p)
    p.add_argument("--layer", help="feature layer (alexnet: fc7, fc6, fc7-relu, pool5)")
    p.add_argument("--weights", help="imagenet (default), none (random init) or a local file")
    p.add_argument(
        "--allow-download", action="store_true", help="download missing pretrained weights"
    )
    p.add_argument("--out", type=output_file, default=Path("features.npz"), help="output .npz")
    p.add_argument("--batch-size", type=int, help="images per forward pass")
    p.add_argument(
        "--workers",
        type=int,
        help="threads feeding a GPU: file readers for JPEGs, decoders for other images (CPU lanes use their own cores)",
    )
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, mps")
    p.add_argument("--float16", action="store_true", help="store features as float16")
    p.add_argument(
        "--decoder",
        choices=("pil", "fast"),
        default="pil",
        help="CPU image decoding: pil (exact, default) or fast (libjpeg-turbo + torch resize "
        "for plain JPEGs, within 2 grey levels of pil, cached separately)",
    )
    add_cache_options(p)
    add_skip_bad(p)
    add_no_progress(p)
    p.set_defaults(func=run)


def save_npz(path: Path, arrays: dict[str, Any]) -> None:
    """Write ``arrays`` to ``path`` atomically (temp file + rename)."""
    from bench.checkpoint import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_features(path: Path) -> dict[str, Any]:
    """Read an ``extract`` output back (``meta`` parsed from JSON)."""
    with np.load(path, allow_pickle=False) as z:
        out: dict[str, Any] = {k: z[k] for k in z.files}
    out["meta"] = json.loads(str(out["meta"]))
    return out


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bench.data.imageset import Samples
    from bench.data.validate import validate
    from bench.extraction import extract_features
    from bench.feature_cache import FeatureCache
    from bench.registry import get_registry

    console = Console(stderr=True)
    if not args.data.exists():
        raise UserError(f"--data {args.data} does not exist")
    if args.out.suffix != ".npz":
        raise UserError(f"--out {args.out}: the output must be an .npz file")
    if args.batch_size is not None:
        positive_int("--batch-size", args.batch_size, 1, 65_536)
    if args.workers is not None:
        positive_int("--workers", args.workers, 0, 1_024)
    reg = get_registry()
    reg.backbone(args.backbone)  # an unknown name: exit 2 now, before the images are checked
    imageset = load_imageset(args.dataset, args.data, flag="--data")
    imageset, report = validate(imageset, skip_bad=args.skip_bad, min_per_class=1)
    options: dict[str, Any] = {}
    if args.layer:
        options["layer"] = args.layer
    if args.weights:
        options["weights"] = args.weights
    if args.allow_download:
        options["download"] = True
    backbone = reg.build_backbone(args.backbone, **options)
    if not backbone.pretrained:
        console.print("[yellow]backbone is NOT pretrained (random init, weights=none)[/yellow]")
    cache = None if args.no_cache else FeatureCache(args.cache_dir)
    result = extract_features(
        Samples.originals(imageset),
        backbone,
        digests=report.digests,
        cache=cache,
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.no_progress,
        dtype=np.float16 if args.float16 else np.float32,
        decoder=args.decoder,
    )
    meta = {
        "backbone": backbone.describe(),
        "dataset": {
            "plugin": args.dataset,
            "path": str(args.data),
            "fingerprint": report.fingerprint,
            "decoder": args.decoder,
            "classes": list(imageset.classes),
            "positive": imageset.positive,
            "excluded": [list(x) for x in report.excluded],
        },
        "extraction": {
            "device": result.device,
            "n_cached": result.n_cached,
            "n_computed": result.n_computed,
            "seconds": round(result.seconds, 3),
            "images_per_s": round(result.images_per_s, 2),
            "dtype": str(result.features.dtype),
        },
    }
    save_npz(
        args.out,
        {
            "features": result.features,
            "labels": np.asarray(imageset.labels, dtype=np.int64),
            "groups": np.asarray(imageset.groups, dtype=str),
            "digests": np.asarray(report.digests, dtype=str),
            "paths": np.asarray([imageset.relpath(i) for i in range(len(imageset))], dtype=str),
            "classes": np.asarray(imageset.classes, dtype=str),
            "meta": np.asarray(strict_json.dumps(meta)),
        },
    )
    console.print(
        f"{args.out}: {result.features.shape[0]} x {result.features.shape[1]} features "
        f"({result.n_cached} from cache, {result.n_computed} computed in {result.seconds:.1f}s"
        + (f", {result.images_per_s:.1f} img/s" if result.n_computed else "")
        + ")"
    )
    return 0
