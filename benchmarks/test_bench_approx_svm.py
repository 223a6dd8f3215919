"""The approximate SVMs against the exact ones: one fold's fit time and agreement.

Run::

    python benchmarks/test_bench_approx_svm.py --n 3216            # agreement with exact SVC
    python benchmarks/test_bench_approx_svm.py --n 18000 --no-exact # fit time at scale only
    python -m pytest benchmarks/test_bench_approx_svm.py --benchmark-enable -s

Features are ``fc7_like`` (benchmarks/test_bench_model1.py), float32, seeded;
the fold is fold 0 of the 10 grouped folds (``--n 20000`` gives 18,000
training rows). Per approximate classifier: fit + predict seconds on that fold
(one BLAS thread, as under ``cross_validate``), its test accuracy, and - unless
``--no-exact`` - the exact classifier's (``KernelSVC``, libsvm) time, accuracy
and the fraction of test rows both predict identically. One JSON line per
classifier; the 1-minute load average and the process's peak RSS so far
(data included) are recorded with each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

APPROX = ["svm-linear-approx", "svm-gaussian-nystroem", "svm-cubic-nystroem"]


def one_fold(n: int, d: int, names: list[str], *, exact: bool, options: dict) -> list[dict]:
    """Fit every named approximation (and its exact twin) on fold 0; one record each."""
    from threadpoolctl import threadpool_limits

    from bench.registry import get_registry
    from benchmarks.test_bench_model1 import fc7_like, grouped_folds

    registry = get_registry()
    X, y, groups = fc7_like(n=n, d=d)
    train, test = grouped_folds(groups)[0]
    x_train, x_test = X[train], X[test]
    out = []
    with threadpool_limits(limits=1, user_api="blas"):
        for name in names:
            spec = registry.classifier(name)
            est = registry.build_classifier(name, **options)
            t0 = time.perf_counter()
            pred = est.fit(x_train, y[train]).predict(x_test)
            rec = {
                "classifier": name,
                "label": spec.paper_label,
                "n_train": len(train),
                "n_test": len(test),
                "d": d,
                "options": options,
                "fit_predict_s": time.perf_counter() - t0,
                "accuracy": float(np.mean(pred == y[test])),
                "converged": bool(getattr(est, "converged_", True)),
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "load_avg_1min": os.getloadavg()[0],
            }
            if exact and spec.approximates:
                ref = registry.build_classifier(spec.approximates)
                t1 = time.perf_counter()
                pred_exact = ref.fit(x_train, y[train]).predict(x_test)
                rec["exact"] = spec.approximates
                rec["exact_fit_predict_s"] = time.perf_counter() - t1
                rec["exact_accuracy"] = float(np.mean(pred_exact == y[test]))
                rec["identical_predictions"] = float(np.mean(pred == pred_exact))
            out.append(rec)
            print(json.dumps(rec), flush=True)
    return out


def test_approx_svms_agree_with_the_exact_ones(benchmark):
    """At 3,216 images (where the exact SVMs are still fast): >= 95% identical predictions."""
    records = benchmark.pedantic(
        one_fold, args=(3216, 4096, APPROX), kwargs={"exact": True, "options": {}}, rounds=1
    )
    benchmark.extra_info["records"] = records
    for rec in records:
        assert rec["identical_predictions"] >= 0.95, rec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3216)
    parser.add_argument("--d", type=int, default=4096)
    parser.add_argument("--classifiers", default=",".join(APPROX))
    parser.add_argument("--no-exact", action="store_true", help="skip the exact SVMs")
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE (JSON value)")
    args = parser.parse_args()
    options = {}
    for item in args.option:
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    names = [c for c in args.classifiers.split(",") if c]
    one_fold(args.n, args.d, names, exact=not args.no_exact, options=options)


if __name__ == "__main__":
    main()
