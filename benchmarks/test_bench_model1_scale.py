"""Model 1 at scale: the paper's six classifiers x 10 grouped folds from n = 1,000 to 20,000.

Run (each size in its own subprocess, one JSON line per size appended to ``--out``)::

    python -m pytest benchmarks/test_bench_model1_scale.py --benchmark-enable -s
    # or one size by hand, then the figure:
    python benchmarks/test_bench_model1_scale.py --n 10000 --d 4096 --out scale.jsonl
    python benchmarks/test_bench_model1_scale.py --plot scale.jsonl --figure docs/figures/model1_scale.png

Features are ``fc7_like`` (benchmarks/test_bench_model1.py: ReLU of a low-rank
code, groups of 6 augmented copies), seeded. Per size: wall time of
:func:`bench.crossval.cross_validate` (``n_jobs=2``), peak RSS of the process,
busy time per classifier (sum of fold fit times), and - unless
``--no-baseline`` - plain scikit-learn's fit + predict of each reference
estimator on *one* fold, times 10: an extrapolation of plain cross-validation,
labelled as such. ``LEUKOBENCH_SCALE_SIZES=1000,3216`` picks the sizes the
pytest wrapper runs (default: 1000, 3216, 10000 at d = 4096 and d = 1280).

``--classifiers`` picks the classifier set (default: the paper's six). At
20,000 images the exact SVMs take hours; the opt-in approximations (labelled
"≈" in the record's ``labels``, docs/classifiers.md) run in minutes::

    python benchmarks/test_bench_model1_scale.py --n 20000 --d 4096 --out scale.jsonl \
        --classifiers dt,lda,knn1,svm-linear-approx,svm-gaussian-nystroem,svm-cubic-nystroem \
        --baseline dt,lda,knn1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PAPER_SIX = ["dt", "lda", "svm-linear", "svm-gaussian", "svm-cubic", "knn1"]
SIZES = (1000, 3216, 10000, 20000)
DIMS = (4096, 1280)


def peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(
    n: int,
    d: int,
    *,
    baseline: list[str],
    memory_limit: str,
    n_jobs: int = 2,
    classifiers: list[str] | None = None,
) -> dict:
    """One size: fast path wall/RSS/busy times, then (optionally) the one-fold baselines."""
    from sklearn.base import clone

    from bench.crossval import cross_validate
    from bench.registry import get_registry
    from benchmarks.test_bench_model1 import fc7_like, grouped_folds
    from plugins.sklearn_classifiers import reference_estimator

    names = list(classifiers or PAPER_SIX)
    registry = get_registry()
    X, y, groups = fc7_like(n=n, d=d)
    folds = grouped_folds(groups)
    rss_data = peak_rss_bytes()
    out_limit = memory_limit
    notes: list[str] = []
    t0 = time.perf_counter()
    result = cross_validate(
        X,
        y,
        folds,
        {name: {} for name in names},
        positive_index=1,
        n_jobs=n_jobs,
        memory_limit=memory_limit,
        note=notes.append,
    )
    wall = time.perf_counter() - t0
    out = {
        "n": n,
        "d": d,
        "n_jobs": n_jobs,
        "classifiers": names,
        "labels": {k: registry.classifier(k).paper_label for k in names},
        "wall_s": wall,
        "peak_rss_bytes": peak_rss_bytes(),
        "rss_after_data_bytes": rss_data,
        "busy_s": {k: sum(f.fit_s for f in v) for k, v in result.items()},
        "accuracy": {
            k: float(np.mean([np.mean(f.y_pred == f.y_true) for f in v])) for k, v in result.items()
        },
        "notes": notes,
        "memory_limit": out_limit,
        "load_avg": os.getloadavg(),
    }
    if baseline:
        train, test = folds[0]
        out["sklearn_one_fold_s"] = {}
        out["same_predictions_fold0"] = {}
        for name in baseline:
            ref = clone(reference_estimator(registry.build_classifier(name)))
            t1 = time.perf_counter()
            pred = ref.fit(X[train], y[train]).predict(X[test])
            out["sklearn_one_fold_s"][name] = time.perf_counter() - t1
            out["same_predictions_fold0"][name] = bool(np.array_equal(pred, result[name][0].y_pred))
        out["sklearn_x10_extrapolated_s"] = {
            k: 10 * v for k, v in out["sklearn_one_fold_s"].items()
        }
    return out


def run_size(
    n: int,
    d: int,
    out: Path,
    *,
    baseline: bool = True,
    memory_limit: str = "auto",
    classifiers: list[str] | None = None,
):
    """Measure one size in a fresh subprocess (honest peak RSS); return its record."""
    cmd = [sys.executable, __file__, "--n", str(n), "--d", str(d), "--out", str(out)]
    cmd += ["--classifiers", ",".join(classifiers or PAPER_SIX)]
    cmd += ["--memory-limit", memory_limit] + ([] if baseline else ["--no-baseline"])
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads(out.read_text().strip().splitlines()[-1])


def plot(records: list[dict], figure: Path) -> None:
    """Log-log wall time against n: fast path per d, plain scikit-learn (extrapolated) per d."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 5.0))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    dims = sorted({r["d"] for r in records}, reverse=True)
    for k, (d, marker) in enumerate(zip(dims, "os^", strict=False)):
        colour = colours[k % len(colours)]
        mine = [r for r in records if r["d"] == d]
        rows = sorted(
            (r for r in mine if r.get("classifiers", PAPER_SIX) == PAPER_SIX), key=lambda r: r["n"]
        )
        other = [r for r in mine if r.get("classifiers", PAPER_SIX) != PAPER_SIX]
        if rows:
            ax.plot(
                [r["n"] for r in rows],
                [r["wall_s"] for r in rows],
                marker=marker,
                color=colour,
                label=f"fast, d={d}",
            )
        if other:
            ax.plot(
                [r["n"] for r in other],
                [r["wall_s"] for r in other],
                marker="*",
                linestyle="none",
                markersize=11,
                color=colour,
                label=f"fast, d={d}: tree + LDA + 1-NN + the three approximate SVMs (\u2248)",
            )
        base = [r for r in rows if len(r.get("sklearn_x10_extrapolated_s", {})) == len(PAPER_SIX)]
        if base:
            ax.plot(
                [r["n"] for r in base],
                [sum(r["sklearn_x10_extrapolated_s"].values()) for r in base],
                marker=marker,
                linestyle="--",
                color=colour,
                alpha=0.6,
                label=f"plain scikit-learn (1 fold x 10, extrapolated), d={d}",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("images n")
    ax.set_ylabel("wall time, six classifiers x 10 folds (s)")
    ax.set_title(
        "Model 1 cost curve (shared 2-core machine, n_jobs=2; load: see table)", fontsize=9
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(figure, dpi=120, bbox_inches="tight")


def table(records: list[dict]) -> str:
    """The Markdown table of docs/PERFORMANCE.md ("Model 1 at scale") from the records."""
    short = {"svm-linear": "svm-lin", "svm-gaussian": "svm-rbf", "svm-cubic": "svm-cub"}
    short |= {"svm-linear-approx": "svm-lin≈", "svm-gaussian-nystroem": "svm-rbf≈"}
    short |= {"svm-cubic-nystroem": "svm-cub≈"}
    lines = [
        "| n | d | wall | peak RSS | busy per classifier, fast path (s) "
        "| plain scikit-learn, 1 fold x 10 (s, extrapolated) | load avg (1 min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: (-r["d"], r["n"])):
        busy = ", ".join(f"{short.get(k, k)} {v:.1f}" for k, v in r["busy_s"].items())
        base = r.get("sklearn_x10_extrapolated_s", {})
        plain = ", ".join(f"{short.get(k, k)} {v:.0f}" for k, v in base.items()) or "-"
        lines.append(
            f"| {r['n']:,} | {r['d']:,} | {r['wall_s']:.1f} s | "
            f"{r['peak_rss_bytes'] / 1e9:.2f} GB | {busy} | {plain} | {r['load_avg'][0]:.1f} |"
        )
    return "\n".join(lines)


def test_model1_scale(tmp_path, benchmark):
    """Each size in its own subprocess; the fast path must not lose to plain scikit-learn."""
    sizes = [int(s) for s in os.environ.get("LEUKOBENCH_SCALE_SIZES", "1000,3216,10000").split(",")]
    out = tmp_path / "scale.jsonl"
    records = []
    for d in DIMS:
        for n in sizes:
            records.append(run_size(n, d, out))
            print(json.dumps(records[-1]))
    benchmark.extra_info["records"] = records
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    for rec in records:
        assert all(rec["same_predictions_fold0"].values()), rec
        for name, plain in rec["sklearn_x10_extrapolated_s"].items():
            assert rec["busy_s"][name] <= plain, (rec["n"], rec["d"], name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int)
    parser.add_argument("--d", type=int, default=4096)
    parser.add_argument("--out", type=Path, default=Path("model1_scale.jsonl"))
    parser.add_argument("--memory-limit", default="auto")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--classifiers",
        default=",".join(PAPER_SIX),
        help="classifiers cross-validated (default: the paper's six; e.g. "
        "dt,lda,knn1,svm-linear-approx,svm-gaussian-nystroem,svm-cubic-nystroem at 20,000)",
    )
    parser.add_argument(
        "--baseline", default=None, help="classifiers timed in plain scikit-learn (default: all)"
    )
    parser.add_argument("--plot", type=Path, help="JSON-lines file to draw (and tabulate)")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs/figures/model1_scale.png")
    args = parser.parse_args()
    if args.plot:
        records = [json.loads(line) for line in args.plot.read_text().splitlines() if line]
        plot(records, args.figure)
        print(table(records))
        return
    names = [c for c in args.classifiers.split(",") if c]
    chosen = names if args.baseline is None else [b for b in args.baseline.split(",") if b]
    baseline = [] if args.no_baseline else [b for b in chosen if b in names]
    rec = measure(
        args.n, args.d, baseline=baseline, memory_limit=args.memory_limit, classifiers=names
    )
    with args.out.open("a") as fh:
        fh.write(json.dumps(rec) + "\n")
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
