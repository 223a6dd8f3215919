"""LeukoBench: plugin-based benchmarking of transfer learning on blood-smear microscopy.

The stable Python API (docs/api.md) is re-exported here from :mod:`bench.api`,
loaded on first use so ``import bench`` stays cheap::

    import bench
    result = bench.run(bench.load_suite("quickstart"))
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("leukobench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

_API = (
    "Features",
    "Result",
    "compare_results",
    "extract_features",
    "load_result",
    "load_suite",
    "predict_images",
    "run",
)

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
