"""Saved models and resumable training state -- never unpickling arbitrary objects.

A *model file* is one ``.safetensors`` file: the tensors (a fine-tuned state
dict, or a Model 1 pipeline's training features) plus a JSON metadata document
stored in the safetensors header under the key ``"leukobench"`` (schema
:data:`SCHEMA`). It holds everything needed to use the model: kind
(``"finetune"`` or ``"features"``), class names, positive class, backbone name
and options, preprocessing, training settings, metrics and dataset fingerprint.

A *training state* file (``state.pt``, resume only) is written with
``torch.save`` of plain containers and tensors and read back with
``torch.load(weights_only=True)``.

Integrity: both carry a SHA-256 of their tensors (:func:`tensors_digest`:
names, dtypes, shapes and bytes) -- a model file in its metadata
(``tensors_sha256``), a training state under the key ``tensors_sha256``. A
model file whose tensors do not match is refused (:class:`UserError` naming
the file, so ``leukobench predict`` exits 2); a training state that does not
match is reported with a :class:`~bench.feature_cache.CacheCorruptionWarning`
and read as empty (``{}``), so a resumed fold is trained again from its start.
Files written before checksums existed carry none and are read as before.

Every write goes to a temporary file that is renamed into place; JSON is
strict (:mod:`bench.strict_json`).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.atomic import atomic_write_bytes
from bench.errors import UserError
from bench.readable import readable
from bench.strict_json import dumps as strict_dumps

SCHEMA = "leukobench.checkpoint/1"
META_KEY = "leukobench"
KINDS = ("finetune", "features")
DIGEST_KEY = "tensors_sha256"


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented strict JSON (non-finite numbers as null), atomically."""
    atomic_write_bytes(Path(path), (strict_dumps(obj, indent=1) + "\n").encode())


def _tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor inside nested dicts/lists/tuples, with a path name, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for key in sorted(obj, key=str):
            yield from _tensors(obj[key], f"{prefix}/{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{prefix}/{i}")


def tensors_digest(obj: Any) -> str:
    """SHA-256 over the name, dtype, shape and bytes of every tensor in ``obj`` (nested)."""
    h = hashlib.sha256()
    for name, t in _tensors(obj):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# -- model files ---------------------------------------------------------------
def save_model_file(path: Path, tensors: Mapping[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``tensors`` + ``meta`` (JSON) as one safetensors file, atomically."""
    from safetensors.torch import save

    if meta.get("kind") not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {meta.get('kind')!r}")
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = {"schema": SCHEMA, **meta, DIGEST_KEY: tensors_digest(flat)}
    header = {META_KEY: strict_dumps(meta, sort_keys=True)}
    path = Path(path)
    atomic_write_bytes(path, save(flat, metadata=header))
    return path


def read_model_meta(path: Path) -> dict[str, Any]:
    """Only the metadata of a model file (cheap: reads the header)."""
    return _open_model(Path(path), tensors=False)[1]


def load_model_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, meta)`` of a model file; :class:`UserError` if missing, corrupt or foreign."""
    return _open_model(Path(path), tensors=True)


def _open_model(path: Path, tensors: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open

    if not path.is_file():
        raise UserError(f"model file {path} not found")
    hint = "re-train or point --model at a .safetensors file written by leukobench"
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            out = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}  # noqa: SIM118
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        raise UserError(
            f"model file {path} is corrupt or truncated, or not a safetensors file ({exc}); {hint}"
        ) from exc
    if META_KEY not in header:
        raise UserError(f"model file {path} is not a LeukoBench checkpoint (no metadata); {hint}")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as exc:
        raise UserError(f"model file {path} has unreadable LeukoBench metadata ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        got = meta.get("schema") if isinstance(meta, dict) else None
        raise UserError(f"model file {path} has schema {got!r}; this LeukoBench reads {SCHEMA!r}")
    if meta.get("kind") not in KINDS:
        raise UserError(f"model file {path} has unknown kind {meta.get('kind')!r}")
    want = meta.get(DIGEST_KEY)
    if tensors and want is not None and tensors_digest(out) != want:
        raise UserError(
            f"model file {readable(path)} is corrupt: its tensors do not match their checksum "
            f"({DIGEST_KEY}); re-train or restore the file from a copy"
        )
    return out, meta


# -- Model 1 pipelines -----------------------------------------------------------
def save_feature_pipeline(
    path: Path,
    backbone_name: str,
    backbone_options: dict[str, Any],
    classifier_name: str,
    classifier_options: dict[str, Any],
    X_train: np.ndarray,
    y_train: np.ndarray,
    classes: list[str] | tuple[str, ...],
    positive: str | None,
    preprocessing: dict[str, Any],
    *,
    backbone_info: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    dataset_fingerprint: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save a Model 1 pipeline (backbone features + classifier) without pickling it.

    The training features ``X_train`` (N, D) and labels ``y_train`` are stored as
    tensors; at load time the backbone is rebuilt from the registry with
    ``backbone_options`` (its ``weights_digest`` must match
    ``backbone_info["weights_digest"]`` when given) and the classifier
    ``classifier_name(**classifier_options)`` is refitted on them -- so the
    classifier must be deterministic (fix ``random_state`` in its options).
    ``preprocessing`` is the backbone's ``preprocessing()`` dict, plus ``mask``
    (the rectangles blanked before the network) when one was used.
    """
    X = np.ascontiguousarray(np.asarray(X_train, dtype=np.float32))
    y = np.asarray(y_train, dtype=np.int64)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X_train must be (N, D) with N == len(y_train); got {X.shape}, {y.shape}")
    meta = {
        "kind": "features",
        "classes": list(classes),
        "positive": positive,
        "backbone": {
            "name": backbone_name,
            "options": dict(backbone_options),
            "info": backbone_info or {},
        },
        "classifier": {"name": classifier_name, "options": dict(classifier_options)},
        "preprocessing": dict(preprocessing),
        "metrics": metrics or {},
        "dataset_fingerprint": dataset_fingerprint,
        "n_train": len(y),
        "torch": torch.__version__,
        **(extra or {}),
    }
    tensors = {"X_train": torch.from_numpy(X), "y_train": torch.from_numpy(y)}
    return save_model_file(Path(path), tensors, meta)


# -- training state (resume) ----------------------------------------------------------
def save_training_state(path: Path, state: dict[str, Any]) -> None:
    """Write a resumable training state (tensors and plain containers only), atomically."""
    import io

    buf = io.BytesIO()
    torch.save({**state, DIGEST_KEY: tensors_digest(state)}, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_training_state(path: Path) -> dict[str, Any]:
    """Read a state written by :func:`save_training_state` (``weights_only=True``).

    UserError when the file is unreadable or foreign; ``{}`` (with a warning) when
    its tensors fail their checksum, so the caller starts that fold afresh.
    """
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise UserError(
            f"training state {path} is corrupt or not a LeukoBench state ({exc}); "
            "delete it to start this fold afresh"
        ) from exc
    if not isinstance(state, dict) or state.get("schema") != SCHEMA:
        raise UserError(
            f"training state {path} is not a LeukoBench {SCHEMA} state; delete it to start afresh"
        )
    want = state.pop(DIGEST_KEY, None)
    if want is not None and tensors_digest(state) != want:
        from bench.feature_cache import CacheCorruptionWarning

        warnings.warn(
            f"training state {readable(path)} is corrupt (its tensors do not match their "
            "checksum); this fold is trained again from its start",
            CacheCorruptionWarning,
            stacklevel=2,
        )
        return {}
    return state
