"""Pieces the protocols share: a backbone's dry-run row, its feature-cache status, memoised fits.

:func:`backbone_plan_row` builds a :class:`PlanRow` and the backbone (or marks
the row "cannot build"); :func:`feature_cache_status` counts the cached
features of a sample set and fills the row's extraction estimate from the
machine's measured throughput; :func:`fit_size_notes` collects what classifiers say about fits
of a size (dry runs print it); :func:`memo_fits` lets the first ``fit`` job of
a backbone fit every classifier of its group at once and the others take their
share from the context's memo; :func:`extract_and_fit_jobs` makes those jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.errors import UserError
from bench.protocols.base import Job, PlanRow, Resources

if TYPE_CHECKING:
    from bench.data.imageset import Samples
    from bench.protocols.context import RunContext
    from bench.suite import Cell


def backbone_plan_row(
    ctx: RunContext,
    *,
    protocol: int,
    kind: str,
    backbone: str,
    seed: int,
    what: str,
    split: str,
    leaky: bool,
    samples: int,
) -> tuple[PlanRow, Any | None]:
    """A dry-run row for ``backbone`` and the built backbone.

    When the backbone cannot be built the row says so (``ok = False``) and the
    backbone is ``None``; the caller then adds the row as it is.
    """
    row = PlanRow(
        protocol=protocol,
        kind=kind,
        backbone=backbone,
        seed=seed,
        what=what,
        split=split,
        leaky=leaky,
        samples=samples,
        status="",
    )
    try:
        built = ctx.backbone(backbone)
    except UserError as exc:
        row.status, row.ok = f"cannot build: {exc}", False
        return row, None
    return row, built


@dataclass(frozen=True)
class FeatureStatus:
    """How many of a sample set's features the cache holds."""

    cached: int
    total: int

    @property
    def todo(self) -> int:
        """Features still to extract."""
        return self.total - self.cached


def feature_cache_status(
    ctx: RunContext, row: PlanRow, samples: Samples, backbone: Any
) -> FeatureStatus:
    """Count the cached features of ``samples`` and fill ``row``'s extraction estimate.

    ``row.estimate_s`` becomes the measured throughput's seconds for the images
    still to extract (0 when none, None when nothing was measured yet) and
    ``row.work`` says how many images that is. The row's status is left to the caller.
    """
    from bench.extraction import sample_keys
    from bench.throughput import key_of

    decoder = ctx.suite.config["run"]["decoder"]
    keys = sample_keys(samples, backbone, ctx.data.digests, ctx.mask, ctx.device, decoder)
    cache = ctx.feature_cache  # None with caching off: everything is extracted again
    status = FeatureStatus(cache.count(keys) if cache is not None else 0, len(keys))
    todo = status.todo
    row.estimate_s = (
        0.0
        if not todo
        else ctx.throughput.estimate(key_of("extract", row.backbone, str(ctx.device)), todo)
    )
    row.work = f"{todo} images" if todo else ""
    return status


def fit_size_notes(
    ctx: RunContext, classifiers: Sequence[str], n_train: int, n_features: int
) -> list[str]:
    """What the classifiers say about fits of ``n_train`` rows (:class:`~bench.fold_fastpath.FitSizeNote`)."""
    from bench.fold_fastpath import FitSizeNote

    notes: list[str] = []
    options = ctx.suite.config["classifier"]
    for name in classifiers:
        estimator = ctx.registry.build_classifier(name, **options.get(name, {}))
        if isinstance(estimator, FitSizeNote):
            note = estimator.fit_size_note(n_train, n_features)
            if note and note not in notes:
                notes.append(note)
    return notes


def memo_fits(
    ctx: RunContext,
    job: Job,
    memo_name: str,
    fit: Callable[[Sequence[str]], Mapping[str, Any]],
) -> Any:
    """The result of ``job``'s classifier (payload ``classifier`` and ``group``).

    With ``ctx.fit_together`` the first call for a backbone (``job.deps[0]``, its
    extract job) runs ``fit`` on every classifier of the group not memoised yet;
    the other jobs take their result from memo ``memo_name``. Otherwise ``fit``
    sees only the job's own classifier. Results are the same either way.
    """
    p = job.payload
    memo = ctx.memo(memo_name)
    key = (job.deps[0], p["classifier"])
    if key not in memo:
        names = p["group"] if ctx.fit_together else [p["classifier"]]
        names = [n for n in names if (job.deps[0], n) not in memo] or [p["classifier"]]
        results = fit(names)
        for n in names:
            memo[(job.deps[0], n)] = results[n]
    return memo.pop(key)


def extract_and_fit_jobs(
    protocol: str,
    extract_id: str,
    backbone: str,
    common: Mapping[str, Any],
    cells: Sequence[Cell],
    *,
    network: Resources,
    fits: Resources,
    weight: float | Callable[[Cell], float] = 1.0,
) -> list[Job]:
    """One ``extract`` job of ``backbone`` and a ``fit`` job per cell depending on it.

    ``network`` is what the extraction asks of the machine, ``fits`` what a fit job does
    (:meth:`RunContext.network_resources`, :meth:`RunContext.fit_resources`).

    Each fit job's payload is ``common`` plus ``backbone``, ``classifier`` and the
    ``group`` of every cell's classifier (see :func:`memo_fits`); ``weight`` is a
    fit job's relative cost, or a function of its cell giving it.
    """
    extract = Job(
        id=extract_id,
        protocol=protocol,
        kind="extract",
        payload={**common, "backbone": backbone},
        resources=network,
        cells=tuple(c.id for c in cells),
    )
    out = [extract]
    group = [c.classifier for c in cells]
    for cell in cells:
        out.append(
            Job(
                id=f"fit|{cell.id}",
                protocol=protocol,
                kind="fit",
                payload={
                    **common,
                    "backbone": backbone,
                    "classifier": cell.classifier,
                    "group": group,
                },
                deps=(extract.id,),
                resources=fits,
                cells=(cell.id,),
                weight=weight(cell) if callable(weight) else weight,
            )
        )
    return out
