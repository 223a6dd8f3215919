"""The ``external`` protocol: train on the suite's data, test on other datasets.

Modules: :mod:`~bench.protocols.external.classes` (class matching, class_map),
:mod:`~bench.protocols.external.testsets` (test sets: declared, loaded, featurised),
:mod:`~bench.protocols.external.work` (the fits and fine-tunes),
:mod:`~bench.protocols.external.records` (cells and the drop table),
:mod:`~bench.protocols.external.protocol` (the protocol).
"""

from bench.hookspecs import hookimpl
from bench.protocols.external.classes import ClassMatch, match_classes
from bench.protocols.external.protocol import ExternalCell, ExternalProtocol
from bench.specs import ProtocolSpec

__all__ = [
    "ClassMatch",
    "ExternalCell",
    "ExternalProtocol",
    "leukobench_protocols",
    "match_classes",
]


@hookimpl
def leukobench_protocols() -> ProtocolSpec:
    """External validation: train on A, test on B."""
    return ProtocolSpec("external", ExternalProtocol, ExternalProtocol.description)
