"""``leukobench run [SUITE]``: run a declarative suite (default: the offline quickstart)."""

from __future__ import annotations

import argparse
import os

from bench.cli.common import (
    add_cache_options,
    add_no_progress,
    add_skip_bad,
    data_path,
    make_console,
    output_folder,
)
from bench.errors import UserError

DEFAULT_SUITE = "quickstart"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a suite (default: the offline quickstart)",
        description="Run a declarative suite file (TOML) or a shipped suite by name.",
    )
    p.add_argument(
        "suite",
        nargs="?",
        default=DEFAULT_SUITE,
        help="suite file or shipped name (default: quickstart)",
    )
    p.add_argument(
        "--data", metavar="PATH", type=data_path, help="dataset folder/file (overrides data.path)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a suite field, e.g. --set protocol.0.folds=5 (repeatable)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the plan and what is cached; run nothing"
    )
    p.add_argument(
        "--results-dir",
        type=output_folder,
        help="where to write the result record (default: suite.results_dir)",
    )
    add_skip_bad(p)
    add_cache_options(p)
    add_no_progress(p)
    p.add_argument(
        "--allow-download",
        action="store_true",
        help="let backbones download missing pretrained weights (torchvision/timm caches)",
    )
    p.add_argument("--extra-metrics", action="store_true", help="show F1, MCC, ROC-AUC too")
    p.add_argument(
        "--executor",
        metavar="NAME",
        help="what runs the jobs: local (default), or an executor plugin (leukobench list executors)",
    )
    p.add_argument(
        "--track",
        action="append",
        metavar="NAME",
        help="log the run to an experiment tracker: mlflow, tensorboard (repeatable; "
        "default: the suite's [run] track)",
    )
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="where the tracker logs, e.g. sqlite:///mlflow.db or http://127.0.0.1:5000",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --executor ray: auto, HOST:PORT or ray://HOST:PORT of a Ray cluster "
        "(default: [run] ray_address; empty: start a local cluster); implies --executor ray",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.registry import get_registry
    from bench.suite import load_suite

    if args.allow_download:
        os.environ["LEUKOBENCH_ALLOW_DOWNLOAD"] = "1"
    registry = get_registry()
    executor_options = {}
    if args.ray_address is not None:
        if args.executor not in (None, "ray"):
            raise UserError(f"--ray-address is for --executor ray, not {args.executor!r}")
        args.executor = "ray"
        executor_options["address"] = args.ray_address
    if args.executor:
        registry.executor(args.executor)  # unknown name: exit 2 with suggestions
    suite = load_suite(args.suite, overrides=args.overrides, data_path=args.data, registry=registry)
    tracks = args.track if args.track is not None else suite.config["run"].get("track") or []
    for name in tracks:
        registry.tracker(name)  # unknown name: exit 2 with suggestions, dry run or not
    console = make_console()
    if args.dry_run:
        from bench.plan import print_plan

        return print_plan(
            suite,
            registry,
            console,
            cache_dir=args.cache_dir,
            skip_bad=True if args.skip_bad else None,
            use_cache=False if args.no_cache else None,
        )

    from bench.runner import run_suite

    record, path = run_suite(
        suite,
        registry=registry,
        results_dir=args.results_dir,
        console=make_console(stderr=True),  # a log file or pipe: long paths stay whole
        progress=not args.no_progress,
        skip_bad=True if args.skip_bad else None,
        cache_dir=args.cache_dir,
        use_cache=False if args.no_cache else None,
        executor=args.executor,
        track=args.track,
        tracking_uri=args.tracking_uri,
        executor_options=executor_options,
    )
    from bench.summary import print_run_summary

    print_run_summary(record, console, extra=args.extra_metrics)
    console.print(f"result record: [bold]{path}[/bold]", soft_wrap=True)
    return 0
