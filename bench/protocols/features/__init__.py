"""The builtin ``features`` protocol (Model 1), registered through the entry-point group."""

from bench.hookspecs import hookimpl
from bench.protocols.features.protocol import FeaturesProtocol
from bench.specs import ProtocolSpec

__all__ = ["FeaturesProtocol", "leukobench_protocols"]


@hookimpl
def leukobench_protocols() -> ProtocolSpec:
    """Model 1: pretrained features + classical classifiers under k-fold CV."""
    return ProtocolSpec("features", FeaturesProtocol, FeaturesProtocol.description)
