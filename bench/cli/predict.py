"""``leukobench predict --model CKPT IMAGE_OR_DIR...``: class and probability per image."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from bench import strict_json
from bench.cli.common import check_output, positive_int
from bench.data.validate import DEFAULT_MAX_PIXELS

FORMATS = ("table", "csv", "json")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="diagnose new images with a saved model",
        description=(
            "Predict the class of each image with a model saved by `leukobench run` "
            "(a fine-tuned network or a Model 1 pipeline, .safetensors). Directories are "
            "searched recursively for images. Unreadable images are listed on stderr and "
            "the rest still predicted; exit 0 if at least one image was predicted, else 2."
        ),
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="CKPT",
        help="model file, or RUN_ID[:CELL_ID[:fold=K]] of a run that saved models",
    )
    p.add_argument(
        "--results-dir",
        type=Path,
        default=Path("results"),
        help="where RUN_ID's record is (default results/)",
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="images or folders")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format")
    p.add_argument("--out", type=Path, help="write the predictions to this file (atomic)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"larger images are skipped, never decoded (default {DEFAULT_MAX_PIXELS:,})",
    )
    p.set_defaults(func=run)


def render(preds: list, classes: list[str], fmt: str) -> str:
    """The predictions as a table, CSV or JSON string."""
    if fmt == "json":
        rows = [
            {
                "path": p.path,
                "class": p.label,
                "probability": p.probability,
                "probabilities": p.probabilities,
            }
            for p in preds
        ]
        return strict_json.dumps(rows, indent=1) + "\n"
    header = ["path", "class", "probability", *[f"p({c})" for c in classes]]
    rows = [
        [p.path, p.label, f"{p.probability:.4f}", *[f"{p.probabilities[c]:.4f}" for c in classes]]
        for p in preds
    ]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return buf.getvalue()
    from tabulate import tabulate

    return tabulate(rows, headers=header, tablefmt="simple") + "\n"


def run(args: argparse.Namespace) -> int:
    from bench.atomic import atomic_write_text
    from bench.predict import collect_images, load_predictor, predict_paths

    positive_int("--batch-size", args.batch_size, 1, 65_536)
    positive_int("--max-pixels", args.max_pixels, 1, 10**12)
    if args.out:
        check_output(args.out)
    from bench.saved_models import resolve_model

    model = resolve_model(args.model, args.results_dir)
    predictor = load_predictor(model, device=args.device, max_pixels=args.max_pixels)
    paths, problems = collect_images(args.inputs)
    preds, bad = predict_paths(predictor, paths, batch_size=args.batch_size)
    problems += bad
    text = render(preds, predictor.classes, args.format)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {len(preds)} prediction(s) to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if problems:
        print(f"{len(problems)} input(s) skipped:", file=sys.stderr)
        for path, reason in problems:
            print(f"  {path}: {reason}", file=sys.stderr)
    if not preds:
        print("leukobench: error: no image could be predicted", file=sys.stderr)
        return 2
    return 0
