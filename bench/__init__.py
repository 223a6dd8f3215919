"""LeukoBench: plugin-based benchmarking of transfer learning on blood-smear microscopy."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("leukobench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
