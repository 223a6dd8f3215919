"""The ``tuned`` protocol: classifiers tuned by nested grouped cross-validation.

Modules: :mod:`~bench.protocols.tuned.grid` (the declared grid, in ParameterGrid
order), :mod:`~bench.protocols.tuned.nested` (nested CV on one shared Gram matrix),
:mod:`~bench.protocols.tuned.cache` (through the prediction cache),
:mod:`~bench.protocols.tuned.records` (cells, tables), :mod:`~bench.protocols.tuned.protocol`.
"""

from bench.hookspecs import hookimpl
from bench.protocols.tuned.grid import GridPoint, expand_grid
from bench.protocols.tuned.nested import NestedResult, inner_splits, nested_cross_validate
from bench.protocols.tuned.protocol import TunedProtocol
from bench.specs import ProtocolSpec

__all__ = [
    "GridPoint",
    "NestedResult",
    "TunedProtocol",
    "expand_grid",
    "inner_splits",
    "leukobench_protocols",
    "nested_cross_validate",
]


@hookimpl
def leukobench_protocols() -> ProtocolSpec:
    """Nested CV over a declared grid."""
    return ProtocolSpec("tuned", TunedProtocol, TunedProtocol.description)
