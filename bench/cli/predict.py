"""``leukobench predict --model CKPT IMAGE_OR_DIR...``: class and probability per image."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from bench.errors import UserError

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
        return json.dumps(rows, indent=1) + "\n"
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
    from bench.checkpoint import atomic_write_bytes
    from bench.predict import collect_images, load_predictor, predict_paths

    if args.batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    from bench.saved_models import resolve_model

    predictor = load_predictor(resolve_model(args.model, args.results_dir), device=args.device)
    paths, problems = collect_images(args.inputs)
    preds, bad = predict_paths(predictor, paths, batch_size=args.batch_size)
    problems += bad
    text = render(preds, predictor.classes, args.format)
    if args.out:
        atomic_write_bytes(args.out, text.encode())
        print(f"wrote {len(preds)} prediction(s) to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if problems:
        print(f"{len(problems)} input(s) could not be predicted:", file=sys.stderr)
        for path, reason in problems:
            print(f"  {path}: {reason}", file=sys.stderr)
    if not preds:
        print("leukobench: error: no image could be predicted", file=sys.stderr)
        return 2
    return 0
