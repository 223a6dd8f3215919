"""The external protocol's jobs: Model 1 fits (in-domain CV and train-all -> test sets) and
Model 2 fine-tunes (train-all -> test sets, and the in-domain folds), each resumable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.crossval import FoldPrediction

if TYPE_CHECKING:
    from bench.data.imageset import Samples
    from bench.protocols.base import Job
    from bench.protocols.context import RunContext
    from bench.protocols.external.testsets import TestSet
    from bench.protocols.finetune.settings import FinetuneSettings

_MEMO = "external.fits"


def _cut(pred: Any, offsets: Sequence[int], tests: Sequence[TestSet], base: int) -> dict:
    """Per test set: its rows of one prediction over all test rows (indices from 0 per set)."""
    index = np.asarray(pred.test_index, dtype=np.int64)
    out = {}
    for t, start in zip(tests, offsets, strict=True):
        lo = base + start
        sel = np.flatnonzero((index >= lo) & (index < lo + len(t.imageset)))
        sel = sel[np.argsort(index[sel], kind="stable")]
        score = None if pred.score is None else np.asarray(pred.score)[sel]
        out[t.name] = FoldPrediction(
            0,
            index[sel] - lo,
            np.asarray(pred.y_true)[sel],
            np.asarray(pred.y_pred)[sel],
            score,
            float(getattr(pred, "fit_s", getattr(pred, "train_s", 0.0))),
        )
    return out


def _offsets(tests: Sequence[TestSet]) -> list[int]:
    out, at = [], 0
    for t in tests:
        out.append(at)
        at += len(t.imageset)
    return out


def fit_external(
    ctx: RunContext, job: Job, inputs: Mapping[str, Any], tests: Sequence[TestSet]
) -> dict[str, Any]:
    """One classifier's in-domain fold predictions and its predictions on every test set.

    The in-domain CV is the features protocol's (same features, labels, folds,
    prediction-cache entries); the external fit is one more ``cross_validate`` fold
    (train: every training sample; test: every test image), also cached. In one
    process every classifier of the backbone is fitted in the same calls.
    """
    from bench.protocols.features.fits import predictions
    from bench.protocols.planning import memo_fits

    p = job.payload
    table, seed = p["table"], p["seed"]
    samples = ctx.samples(table["augment"], seed)
    x_train = inputs[job.deps[0]]
    x_tests = [inputs[d] for d in job.deps[1:]]

    def fit(names: Sequence[str]) -> dict[str, Any]:
        classifiers = {n: ctx.suite.classifier_options(n) for n in names}
        in_domain: dict[str, list] = {}
        in_cached: set[str] = set()
        if table["in_domain"]:
            splits, _ = ctx.splits(samples, table, seed)
            in_domain, in_cached = predictions(ctx, x_train, samples.labels, splits, classifiers)
        X = np.vstack([x_train, *x_tests])
        y = np.concatenate([samples.labels, *[t.imageset.labels for t in tests]])
        n_train = len(x_train)
        folds = [(np.arange(n_train), np.arange(n_train, len(X)))]
        ext, ext_cached = predictions(ctx, X, y, folds, classifiers)
        return {
            n: {
                "in_domain": in_domain.get(n),
                "tests": _cut(ext[n][0], _offsets(tests), tests, n_train),
                "from_cache": n in ext_cached and (n in in_cached or not table["in_domain"]),
            }
            for n in names
        }

    return memo_fits(ctx, job, _MEMO, fit)


def _finetune(
    ctx: RunContext,
    job: Job,
    samples: Samples,
    splits: list,
    fold: int,
    settings: FinetuneSettings,
    workdir_id: str,
    digests: Sequence[str],
) -> Any:
    from bench.protocols.finetune.cv import train_context_fold

    p = job.payload
    return train_context_fold(
        ctx,
        samples,
        p["backbone"],
        splits,
        fold,
        settings,
        workdir_id=workdir_id,
        seed=p["seed"],
        digests=digests,
    )


def _work_id(job: Job, what: str) -> str:
    p = job.payload
    return f"external|{p['backbone']}|finetune|{what}|seed={p['seed']}|p{p['index']}"


def train_external(
    ctx: RunContext,
    job: Job,
    samples: Samples,
    digests: Sequence[str],
    train_rows: np.ndarray,
    test_rows: Sequence[np.ndarray],
    settings: FinetuneSettings,
) -> dict[str, Any]:
    """Fine-tune on every training sample, predict every test set (one resumable run)."""
    splits = [(train_rows, np.concatenate(list(test_rows)))]
    result = _finetune(ctx, job, samples, splits, 0, settings, _work_id(job, "all"), digests)
    names = [t["name"] for t in job.payload["table"]["test_data"]]
    index = np.asarray(result.test_index, dtype=np.int64)
    tests = {}
    for name, rows in zip(names, test_rows, strict=True):
        sel = np.flatnonzero(np.isin(index, rows))
        sel = sel[np.argsort(index[sel], kind="stable")]
        score = np.asarray(result.score)
        tests[name] = FoldPrediction(
            0,
            index[sel] - rows[0],
            np.asarray(result.y_true)[sel],
            np.asarray(result.y_pred)[sel],
            score[sel] if score.size else None,
            float(result.train_s),
        )
    return {"tests": tests, "training": result}


def train_in_domain(ctx: RunContext, job: Job, samples: Samples, settings: FinetuneSettings) -> Any:
    """One fold of the in-domain grouped CV of fine-tuning (resumable)."""
    table, seed = job.payload["table"], job.payload["seed"]
    splits, _ = ctx.splits(samples, table, seed)
    return _finetune(
        ctx,
        job,
        samples,
        splits,
        job.payload["fold"],
        settings,
        _work_id(job, "in-domain"),
        ctx.data.digests,
    )
