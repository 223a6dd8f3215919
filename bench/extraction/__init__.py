"""Feature extraction: the public face (:func:`extract_features`) over the CPU lanes, the
general device loop and the CUDA JPEG pipeline.

Modules: ``extract`` (the face: missing samples -> jobs -> a strategy), ``cpu_lanes``,
``device_loop``, ``jpeg_pipeline`` (the three strategies), over ``jobs`` and
``collector`` (the shared job/collector layer), ``sources`` (decoded source images and
the in-run memo), ``normalise``, ``model``, ``gpu_decode``, ``jpeg_bytes``, ``keys``
(feature-cache keys) and ``settings`` (batch size, compiling, autocast dtype).
"""

from bench.extraction.extract import ExtractionResult, extract_features
from bench.extraction.gpu_decode import resize_uint8
from bench.extraction.keys import numerics_tag, sample_keys
from bench.extraction.normalise import Normaliser
from bench.extraction.settings import default_batch_size
from bench.extraction.sources import DecodedImages

__all__ = [
    "DecodedImages",
    "ExtractionResult",
    "Normaliser",
    "default_batch_size",
    "extract_features",
    "numerics_tag",
    "resize_uint8",
    "sample_keys",
]
