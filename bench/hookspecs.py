"""The LeukoBench plugin contract.

A plugin is any object or module with functions named like the hooks below,
marked with :data:`hookimpl`. Builtin plugins (``plugins/``) and third-party
ones are found the same way: through the ``leukobench`` entry-point group of
installed distributions, e.g. in a plugin's ``pyproject.toml``::

    [project.entry-points.leukobench]
    my_plugin = "my_package.leukobench_plugin"

Each hook returns a spec or a list of specs (see :mod:`bench.specs`). Every
spec has a ``name`` that must be unique across all plugins of its kind; the
registry fails naming both plugins when two claim one name.
"""

from __future__ import annotations

import pluggy

from bench.specs import (
    BackboneSpec,
    ClassifierSpec,
    DatasetSpec,
    ExecutorSpec,
    ProtocolSpec,
    TrackerSpec,
)

PROJECT_NAME = "leukobench"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Decorator for plugin functions that implement a hook.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def leukobench_backbones() -> list[BackboneSpec] | BackboneSpec | None:
    """Return the backbones (feature extractors) this plugin provides.

    A backbone turns a float batch ``(N, 3, H, W)``, already resized to its
    ``input_size`` and normalised with its own mean/std, into an ``(N, D)``
    feature tensor, and can build a fine-tunable network with a new k-class
    head. The spec's ``factory(**options)`` returns a
    :class:`bench.backbone.Backbone`; options come from the suite's
    ``[backbone.<name>]`` table (e.g. ``layer``, ``weights``).

    A spec with ``family=True`` answers to every name ``<name>/<model>``; its
    factory receives ``model_name``. An optional ``validate(options)`` checks
    those options cheaply (model name, layer, weight file; no weights loaded)
    and raises :class:`bench.errors.UserError`; a suite calls it before any work,
    so a typo fails in a second, not after minutes of extraction. Factories must not download anything
    unless the user asked for it; missing weights raise
    :class:`bench.errors.WeightsNotFoundError` naming the file they looked for.

    Called once per process, when the registry loads.
    """


@hookspec
def leukobench_classifiers() -> list[ClassifierSpec] | ClassifierSpec | None:
    """Return the classifiers (for feature vectors) this plugin provides.

    The spec's ``factory(**options)`` returns a fresh, unfitted estimator
    following scikit-learn's API: ``fit(X, y)``, ``predict(X)`` and at least
    one of ``predict_proba(X)`` / ``decision_function(X)``; options come from
    the suite's ``[classifier.<name>]`` table. ``paper_label`` is the row name
    used in Table 1; ``in_paper`` marks the six classifiers of Loey et al.;
    ``approximates`` names the exact classifier an approximation stands in for
    (its label should say so: the builtin ones carry "≈").

    Called once per process, when the registry loads.
    """


@hookspec
def leukobench_datasets() -> list[DatasetSpec] | DatasetSpec | None:
    """Return the dataset loaders this plugin provides.

    The spec's ``factory(path, **options)`` returns a
    :class:`bench.data.ImageSet` (paths, integer labels, class names, group ids,
    positive class). Loaders must not decode images: validation and decoding
    happen later, once, in the engine. A loader that cannot understand its
    input raises :class:`bench.errors.UserError` naming the path and what it
    expected.

    Called once per process, when the registry loads.
    """


@hookspec
def leukobench_protocols() -> list[ProtocolSpec] | ProtocolSpec | None:
    """Return the protocols (units of work a suite's ``[[protocol]]`` names) this plugin provides.

    A protocol is named by the suite's ``kind`` (``features`` is Model 1,
    ``finetune`` Model 2). The spec's ``factory()`` returns a
    :class:`bench.protocols.base.Protocol`: it declares its table keys and
    settings (type, default, bounds, description: validated when the suite
    loads, before any image is read), plans its dry-run rows, splits its work
    into picklable :class:`bench.protocols.base.Job` s, runs one job given a
    :class:`bench.protocols.context.RunContext`, and assembles job results into
    typed :class:`bench.records.CellRecord` s. Example::

        @hookimpl
        def leukobench_protocols():
            return ProtocolSpec("majority", MajorityBaseline, "predicts the largest class")

    Called once per process, when the registry loads.
    """


@hookspec
def leukobench_executors() -> list[ExecutorSpec] | ExecutorSpec | None:
    """Return the executors (what runs a run's jobs) this plugin provides.

    The spec's ``factory(**options)`` returns a :class:`bench.executor.Executor`
    whose ``run(ctx, protocol, jobs, on_result)`` runs every job (each after
    its ``deps``) through ``protocol.run_job`` and returns the results by job
    id. A suite picks one with ``[run] executor = "<name>"`` or ``--executor``;
    ``local`` (this process, in order) is the default. Results must not depend
    on the executor: the same suite gives the same record bit for bit.

    Called once per process, when the registry loads.
    """


@hookspec
def leukobench_trackers() -> list[TrackerSpec] | TrackerSpec | None:
    """Return the experiment trackers (sinks for result records) this plugin provides.

    The spec's ``factory(uri=None, experiment=None)`` returns a
    :class:`bench.tracking.Tracker`; its ``record_written(record, path,
    final=...)`` is called with the typed :class:`bench.records.RunRecord`
    after every checkpoint of the record on disk and once with
    ``final=True`` when the run ends. A suite turns trackers on with
    ``[run] track = ["mlflow"]`` (or ``--track mlflow --tracking-uri URI``).
    A tracker that raises is reported once, naming its ``target``, and then
    skipped: tracking never costs a result. Example::

        class PrintTracker(Tracker):
            target = "stdout"

            def record_written(self, record, path, *, final):
                if final:
                    print(record.run_id, len(record.cells))

        @hookimpl
        def leukobench_trackers():
            return TrackerSpec("print", lambda **_: PrintTracker())

    Called once per process, when the registry loads.
    """
