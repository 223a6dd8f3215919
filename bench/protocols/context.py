"""One run context: what every job of a run shares, resolved once and passed explicitly.

There is no ``os.environ`` side channel: the CLI's ``--cache`` and
``$LEUKOBENCH_CACHE`` only choose the :class:`CacheRoot` a context is built with,
and ``run_suite(..., cache_dir=D)`` puts everything (features, predictions,
run state, validation verdicts, weight digests) under ``D``.

A :class:`RunContext` holds per-process memos (built backbones, samples,
features, decoded images) that never leave the process. To run jobs elsewhere,
ship :meth:`RunContext.detach` (a frozen, picklable :class:`ContextSpec`) and
:meth:`ContextSpec.open` it there: the same run, with empty memos.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.cache_paths import active_cache_root, default_cache_root, set_cache_root
from bench.device import cpu_threads
from bench.protocols.resources import Resources
from bench.records import SplitInfo

if TYPE_CHECKING:
    import numpy as np
    from rich.console import Console

    from bench.data.imageset import Samples
    from bench.data.prepare import PreparedData
    from bench.registry import Registry
    from bench.suite import Suite


@dataclass(frozen=True)
class CacheRoot:
    """The folder that holds everything a run computes and may reuse.

    ``features/`` (feature packs), ``predictions/`` (Model 1 fold predictions),
    ``runs/<key>/`` (resumable fine-tuning state per cell), ``validated/``
    (image verdicts), ``weights-digests.json``, ``synthetic/`` (drawn datasets),
    ``throughput.json`` and ``forward-chunks.json`` (whether chunked CPU forwards
    are bit-identical here).
    Picklable: executors send it to workers, which must see the same folder
    (shared storage).
    """

    path: Path

    @classmethod
    def default(cls, explicit: Path | str | None = None) -> CacheRoot:
        """``explicit``, else ``$LEUKOBENCH_CACHE``, else ``~/.cache/leukobench``."""
        if explicit is not None:
            return cls(Path(explicit).expanduser())
        return cls(default_cache_root())

    def features(self):  # -> bench.feature_cache.FeatureCache
        """A feature cache under this root (a new object: it indexes lazily)."""
        from bench.feature_cache import FeatureCache

        return FeatureCache(self.path)

    def predictions(self):  # -> bench.prediction_cache.PredictionCache
        """The Model 1 prediction cache under this root."""
        from bench.prediction_cache import PredictionCache

        return PredictionCache(self.path)

    def run_dir(self, suite_digest: str, fingerprint: str, cell_id: str) -> Path:
        """A stable folder for one cell's resumable work (same suite + data -> same folder).

        The key is the one ``bench.cache_paths.run_workdir`` always used, so runs
        interrupted before this class existed still resume.
        """
        key = hashlib.sha256(f"{suite_digest}|{fingerprint}|{cell_id}".encode()).hexdigest()[:20]
        return self.path / "runs" / key

    @contextlib.contextmanager
    def activate(self) -> Iterator[CacheRoot]:
        """Within the block, :func:`bench.cache_paths.cache_root` (plugins' view) is this root."""
        with active_cache_root(self.path):
            yield self


@dataclass(frozen=True)
class ContextSpec:
    """A run context detached from its process: picklable, frozen, without memos.

    Holds the suite (resolved configuration and where it came from), the prepared
    data (ImageSet, digests, report), the device resolved once, the cache root,
    whether caches are used, where results go and the run id. ``open()`` it in a
    worker to get a :class:`RunContext` of the same run.
    """

    suite: Suite
    data: PreparedData
    device: str
    cache: CacheRoot
    use_cache: bool = True
    progress: bool = False
    results_dir: Path = Path("results")
    run_id: str = ""

    def open(self, registry: Registry | None = None, console: Console | None = None) -> RunContext:
        """A :class:`RunContext` for this run in this process (empty memos).

        ``registry`` defaults to the process-wide one; the cache root becomes what
        :func:`bench.cache_paths.cache_root` answers in this process from now on.
        """
        from rich.console import Console

        from bench.registry import get_registry

        set_cache_root(self.cache.path)
        return RunContext(
            suite=self.suite,
            registry=registry or get_registry(),
            data=self.data,
            device=self.device,
            cache=self.cache,
            use_cache=self.use_cache,
            console=console or Console(stderr=True),
            progress=self.progress,
            results_dir=self.results_dir,
            run_id=self.run_id,
            fit_together=False,
        )


def _reopen(spec: ContextSpec) -> RunContext:
    return spec.open()


def _new_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


@dataclass
class RunContext:
    """What one run shares between its protocols and jobs (see the module docstring).

    ``fit_together`` lets a protocol do several jobs' work at once in this process
    when that is cheaper and gives the same results (Model 1 fits every classifier
    of a backbone on one shared Gram matrix); a context opened from a
    :class:`ContextSpec` in a worker has it off, so each job does its own work.
    Pickling a RunContext pickles its :meth:`detach` form.
    """

    suite: Suite
    registry: Registry
    data: PreparedData
    device: str
    cache: CacheRoot
    use_cache: bool = True
    console: Console = field(default_factory=_new_console)
    progress: bool = True
    results_dir: Path = Path("results")
    run_id: str = ""
    fit_together: bool = True
    # -- per-process memos (never pickled) --------------------------------------------
    backbones: dict[str, Any] = field(default_factory=dict, repr=False)
    sample_memo: dict[tuple[bool, int], Samples] = field(default_factory=dict, repr=False)
    feature_memo: dict[tuple[str, bool, int], np.ndarray] = field(default_factory=dict, repr=False)
    transforms: dict[str, list[str]] = field(default_factory=dict, repr=False)
    memos: dict[str, dict[Any, Any]] = field(default_factory=dict, repr=False)
    _decoded: Any = field(default=None, repr=False)
    _reuses_images: bool | None = field(default=None, repr=False)
    _feature_cache: Any = field(default=None, repr=False)
    _protocols: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- shipping ------------------------------------------------------------------------
    def detach(self) -> ContextSpec:
        """The picklable form of this context (no registry, console or memos)."""
        return ContextSpec(
            suite=self.suite,
            data=self.data,
            device=self.device,
            cache=self.cache,
            use_cache=self.use_cache,
            progress=self.progress,
            results_dir=self.results_dir,
            run_id=self.run_id,
        )

    def __reduce__(self) -> tuple[Any, tuple[ContextSpec]]:
        return _reopen, (self.detach(),)

    # -- what the run is -------------------------------------------------------------------
    @property
    def mask(self) -> list[list[float]] | None:
        """The suite's blank rectangles (``data.mask``), or None."""
        return self.suite.config["data"]["mask"] or None

    @property
    def models_dir(self) -> Path:
        """Where this run saves model files: ``results_dir/models/<run id>/`` (never shared)."""
        return self.results_dir / "models" / self.run_id

    def protocol(self, kind: str) -> Any:
        """The :class:`~bench.protocols.base.Protocol` for a table's ``kind`` (one per context)."""
        if kind not in self._protocols:
            self._protocols[kind] = self.registry.protocol(kind).factory()
        return self._protocols[kind]

    def memo(self, name: str) -> dict[Any, Any]:
        """A per-process dictionary a protocol may use to share work between its jobs."""
        return self.memos.setdefault(name, {})

    def run_dir(self, cell_id: str) -> Path:
        """The resumable-work folder of one cell (same suite + data + cell -> same folder)."""
        return self.cache.run_dir(self.suite.digest(), self.data.fingerprint, cell_id)

    @property
    def decoded(self) -> Any:
        """The in-run memo of decoded images (:class:`bench.extraction.DecodedImages`).

        None when the suite reads each source image once in all (see
        :meth:`~bench.protocols.base.Protocol.image_reads`): nothing to reuse, so
        nothing is held (on Aria, ~0.5 GB of pixels for the whole run).
        """
        if self._decoded is None and self.reuses_images():
            from bench.extraction import DecodedImages

            self._decoded = DecodedImages()
        return self._decoded

    def network_resources(self) -> Resources:
        """What a job that runs a network asks for: one GPU on CUDA, else this process's cores.

        (On the CPU extraction and training use every core, in lanes or threads.)
        """
        if str(self.device).startswith("cuda"):
            return Resources(cpus=1.0, gpus=1.0)
        return Resources(cpus=float(cpu_threads()))

    def fit_resources(self) -> Resources:
        """What a classifier-fitting job asks for: the cores of ``[run] n_jobs``."""
        n_jobs = int(self.suite.config["run"]["n_jobs"] or 1)
        return Resources(cpus=float(n_jobs if n_jobs > 0 else cpu_threads()))

    def reuses_images(self) -> bool:
        """Whether the suite reads some source image more than once (tables x seeds x reads)."""
        if self._reuses_images is None:
            tables = self.suite.protocols
            reads = sum(self.protocol(t["kind"]).image_reads(self, t) for t in tables)
            self._reuses_images = reads * len(self.suite.seeds) > 1
        return self._reuses_images

    @property
    def feature_cache(self) -> Any:
        """The run's feature cache, or None with caching off."""
        if not self.use_cache:
            return None
        if self._feature_cache is None:
            self._feature_cache = self.cache.features()
        return self._feature_cache

    @property
    def prediction_cache(self) -> Any:
        """The Model 1 prediction cache, or None with caching off."""
        return self.cache.predictions() if self.use_cache else None

    # -- shared helpers --------------------------------------------------------------------
    def backbone(self, name: str) -> Any:
        """The backbone ``name`` built with the suite's options (once per process)."""
        if name not in self.backbones:
            options = self.suite.backbone_options(name)
            self.backbones[name] = self.registry.build_backbone(name, **options)
        return self.backbones[name]

    def samples(self, augment: bool, seed: int) -> Samples:
        """The samples a protocol sees: originals, or the suite's augmentation x copies."""
        from bench.data.imageset import Samples

        use = self.augments(augment)
        key = (use, seed if use else 0)
        if key not in self.sample_memo:
            if use:
                from bench.data.augment import expand

                aug = self.suite.config["augment"]
                self.sample_memo[key] = expand(
                    self.data.imageset, scheme=aug["scheme"], copies=aug["copies"], seed=seed
                )
            else:
                self.sample_memo[key] = Samples.originals(self.data.imageset)
        return self.sample_memo[key]

    def augments(self, augment: bool) -> bool:
        """Whether a table with ``augment`` sees augmented copies (the suite makes some)."""
        aug = self.suite.config["augment"]
        return bool(augment and aug["scheme"] != "none" and aug["copies"] > 1)

    def augmentation_info(self, augment: bool, mode: str = "premade") -> dict[str, Any] | None:
        """The record's ``augmentation`` entry for a table with ``augment`` (None: none)."""
        aug = self.suite.config["augment"]
        if not augment or aug["scheme"] == "none" or aug["copies"] <= 1:
            return None
        return {"scheme": aug["scheme"], "copies": aug["copies"], "mode": mode}

    def splits(
        self, samples: Samples, table: Mapping[str, Any], seed: int
    ) -> tuple[list[tuple[np.ndarray, np.ndarray]], SplitInfo]:
        """Train/test index pairs for a table (``folds`` or ``holdout``, ``split``) and seed."""
        from bench.data.splits import make_folds, make_holdout

        leaky = table.get("split", "grouped") == "paper-leaky"
        labels, groups = samples.labels, samples.groups
        if table.get("folds") is not None:
            kind = "paper-leaky" if leaky else "grouped-kfold"
            splits = make_folds(labels, groups, folds=table["folds"], seed=seed, kind=kind)
            return splits, SplitInfo(kind, folds=table["folds"], holdout=None, leaky=leaky)
        holdout = table.get("holdout", 0.2)
        train, test = make_holdout(labels, groups, test_size=holdout, seed=seed, leaky=leaky)
        kind = "paper-leaky" if leaky else "grouped-holdout"
        return [(train, test)], SplitInfo(kind, folds=None, holdout=holdout, leaky=leaky)

    def features(self, backbone_name: str, samples: Samples, augment: bool, seed: int) -> Any:
        """Features of ``samples`` (from the cache where possible), memoised for the run."""
        from bench.extraction import extract_features

        key = (backbone_name, augment, seed)
        if key not in self.feature_memo:
            backbone = self.backbone(backbone_name)
            run_cfg = self.suite.config["run"]
            result = extract_features(
                samples,
                backbone,
                digests=self.data.digests,
                cache=self.feature_cache,
                mask=self.mask,
                device=self.device,
                batch_size=run_cfg["batch_size"] or None,
                workers=run_cfg["workers"],
                progress=self.progress,
                decoded=self.decoded,
                decoder=run_cfg["decoder"],
            )
            self.console.print(
                f"[dim]{backbone_name}: {len(samples)} samples, {result.n_cached} from cache, "
                f"{result.n_computed} computed in {result.seconds:.1f}s[/dim]"
            )
            from bench.throughput import key_of

            self.throughput.record(
                key_of("extract", backbone_name, str(self.device)),
                result.n_computed,
                result.seconds,
            )
            self.feature_memo[key] = result.features
        return self.feature_memo[key]

    @property
    def throughput(self) -> Any:
        """This machine's measured throughput (``bench.throughput``), kept in the cache root."""
        if "throughput" not in self.memos:
            from bench.throughput import ThroughputStore

            self.memos["throughput"] = {"store": ThroughputStore(self.cache.path)}
        return self.memos["throughput"]["store"]

    def transforms_ref(self, samples: Samples) -> str:
        """Name of the sample transforms in the record's ``transforms`` table (stored once)."""
        keys = [t.key() for t in samples.transforms]
        if all(k == "id" for k in keys):
            return "identity"
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]
        self.transforms.setdefault(digest, keys)
        return digest
