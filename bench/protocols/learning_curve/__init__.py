"""The ``learning-curve`` protocol: score against the number of training units.

Modules: :mod:`~bench.protocols.learning_curve.subsample` (nested, stratified,
grouped subsamples), :mod:`~bench.protocols.learning_curve.curve` (which fits, and
each point's score), :mod:`~bench.protocols.learning_curve.records` (cells, table),
:mod:`~bench.protocols.learning_curve.figure`, :mod:`~bench.protocols.learning_curve.protocol`.
"""

from bench.hookspecs import hookimpl
from bench.protocols.learning_curve.curve import CurvePlan, curve_plan, summarise_curve
from bench.protocols.learning_curve.protocol import LearningCurveProtocol
from bench.protocols.learning_curve.subsample import Subsample, nested_subsets
from bench.specs import ProtocolSpec

__all__ = [
    "CurvePlan",
    "LearningCurveProtocol",
    "Subsample",
    "curve_plan",
    "leukobench_protocols",
    "nested_subsets",
    "summarise_curve",
]


@hookimpl
def leukobench_protocols() -> ProtocolSpec:
    """Learning curves: score vs training-set size."""
    return ProtocolSpec("learning-curve", LearningCurveProtocol, LearningCurveProtocol.description)
