"""Saved models and resumable training state -- never unpickling arbitrary objects.

A *model file* is one ``.safetensors`` file: the tensors (a fine-tuned state
dict, or a Model 1 pipeline's training features) plus a JSON metadata document
stored in the safetensors header under the key ``"leukobench"`` (schema
:data:`MODEL_SCHEMA`). It holds everything needed to use the model: kind
(``"finetune"`` or ``"features"``), class names, positive class, backbone name
and options, preprocessing, training settings, metrics and dataset fingerprint.

A *training state* file (``state.pt``, resume only) is written with
``torch.save`` of plain containers and tensors and read back with
``torch.load(weights_only=True)``.

Integrity: both carry a SHA-256 of their tensors (:func:`tensors_digest`:
names, dtypes, shapes and bytes) -- a model file in its metadata
(``tensors_sha256``), a training state under the key ``tensors_sha256``. A
model file also carries ``metadata_sha256`` (:func:`metadata_digest`), a SHA-256
of the canonical JSON of its metadata (``tensors_sha256`` included), so the
class names and order, the positive class, the classifier and the
preprocessing are sealed with the tensors. On load both digests are checked
and the metadata validated (:func:`check_model_meta`); any mismatch or bad key
is refused (:class:`UserError` naming the file, so ``leukobench predict``
exits 2). Files of the older schema :data:`SCHEMA` (written before the metadata
was checksummed) are still read: their tensors are checked, their metadata is
validated but cannot be verified (:class:`LegacyModelFileWarning`). A file
without ``tensors_sha256``, or of :data:`MODEL_SCHEMA` without
``metadata_sha256``, is refused. A training state that does not match is
reported with a :class:`~bench.feature_cache.CacheCorruptionWarning` and read
as empty (``{}``), so a resumed fold is trained again from its start.

Every write goes to a temporary file that is renamed into place; JSON is
strict (:mod:`bench.strict_json`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from bench.atomic import atomic_write_bytes
from bench.errors import UserError
from bench.readable import readable
from bench.strict_json import dumps as strict_dumps

SCHEMA = "leukobench.checkpoint/1"  # training states; model files before metadata_sha256
MODEL_SCHEMA = "leukobench.checkpoint/2"  # model files: tensors and metadata checksummed
MODEL_SCHEMAS = (SCHEMA, MODEL_SCHEMA)
META_KEY = "leukobench"
PIPELINE_KIND = "features"  # a model file of a Model 1 pipeline (features + classifier)
KINDS = ("finetune", PIPELINE_KIND)
DIGEST_KEY = "tensors_sha256"
META_DIGEST_KEY = "metadata_sha256"
MAX_INPUT_SIZE = 8192
RESAVE_HINT = (
    "re-save it (re-run the run that saved it with save_model = true) "
    "or restore the file from a copy"
)
_HEX64 = re.compile(r"[0-9a-f]{64}")


class LegacyModelFileWarning(UserWarning):
    """A model file of schema :data:`SCHEMA`: its metadata carries no checksum."""


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


def metadata_digest(meta: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``meta`` without its ``metadata_sha256``.

    Canonical: keys sorted, no spaces, ASCII only, no NaN/Infinity (ValueError).
    ``meta`` holds ``tensors_sha256``, so this digest seals the whole file.
    """
    body = {k: v for k, v in meta.items() if k != META_DIGEST_KEY}
    text = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return hashlib.sha256(text.encode()).hexdigest()


# -- metadata checks -------------------------------------------------------------
def _bad(key: str, what: str) -> NoReturn:
    """Raise the ValueError naming a bad metadata key."""
    raise ValueError(f"metadata key {key!r} {what}")


def _short(value: Any) -> str:
    """``repr(value)``, cut to 80 characters for a one-line message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_section(meta: Mapping[str, Any], key: str, fields: dict[str, tuple]) -> None:
    """``meta[key]``, when present, is a dict whose ``fields`` have the given types.

    ``fields`` maps a name to ``(required, type, ...)``; ``None`` in the types allows null.
    """
    if key not in meta:
        return
    section = meta[key]
    if not isinstance(section, dict):
        _bad(key, f"must be a JSON object, got {_short(section)}")
    for name, (required, *types) in fields.items():
        if name not in section:
            if required:
                _bad(f"{key}.{name}", "is missing")
            continue
        value = section[name]
        if value is None and None in types:
            continue
        if not isinstance(value, tuple(t for t in types if t is not None)):
            _bad(f"{key}.{name}", f"has the wrong type: {_short(value)}")
        if isinstance(value, str) and not value:
            _bad(f"{key}.{name}", "is empty")


def _check_preprocessing(pre: Any) -> None:
    """ValueError unless ``pre`` is a usable preprocessing dict (size, mean/std, resize, mask)."""
    if not isinstance(pre, dict):
        _bad("preprocessing", f"must be a JSON object, got {_short(pre)}")
    size = pre.get("input_size")
    if not (_is_int(size) and 1 <= size <= MAX_INPUT_SIZE):
        _bad("preprocessing.input_size", f"must be an integer 1..{MAX_INPUT_SIZE}, got {size!r}")
    for name in ("mean", "std"):
        values = pre.get(name)
        if not (isinstance(values, list) and len(values) == 3 and all(map(_is_number, values))):
            _bad(f"preprocessing.{name}", f"must be 3 finite numbers, got {_short(values)}")
    if not all(v > 0 for v in pre["std"]):
        _bad("preprocessing.std", f"must be positive, got {pre['std']}")
    if "interpolation" in pre:
        from bench.data.decode import INTERPOLATIONS

        if pre["interpolation"] not in INTERPOLATIONS:
            got = _short(pre["interpolation"])
            _bad("preprocessing.interpolation", f"must be one of {INTERPOLATIONS}, got {got}")
    if pre.get("mask") is not None:
        from bench.data.mask import check_rects

        try:
            check_rects(pre["mask"])
        except UserError as exc:
            _bad("preprocessing.mask", f"is malformed ({exc})")


def _check_tensors(meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    """ValueError unless the tensors fit the (already checked) metadata."""
    k = len(meta["classes"])
    if meta["kind"] == PIPELINE_KIND:
        X, y = tensors.get("X_train"), tensors.get("y_train")
        if X is None or y is None:
            raise ValueError("a Model 1 pipeline needs the tensors X_train and y_train")
        if X.ndim != 2 or not X.is_floating_point() or min(X.shape) < 1:
            raise ValueError(f"X_train must be a non-empty (N, D) float tensor, got {X.shape}")
        if y.ndim != 1 or y.dtype != torch.int64 or len(y) != len(X):
            raise ValueError(f"y_train must be (N,) int64 labels with N = {len(X)}")
        labels = torch.unique(y).tolist()  # the refitted classifier knows these only
        if labels != list(range(k)):
            _bad("classes", f"names {k} classes but y_train holds the labels {_short(labels)}")
        if "n_train" in meta and meta["n_train"] != len(y):
            _bad("n_train", f"is {meta['n_train']} but y_train holds {len(y)} labels")
        return
    head = (meta.get("backbone") or {}).get("head_module")
    weight = tensors.get(f"{head}.weight") if head else None
    if weight is not None and weight.ndim >= 1 and weight.shape[0] != k:
        _bad("classes", f"names {k} classes but the network's head has {weight.shape[0]} outputs")


def check_model_meta(
    meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor] | None = None
) -> None:
    """ValueError naming the key when a model file's metadata is malformed.

    Checks ``kind``; ``classes`` (2 or more distinct non-empty names); ``positive``
    (null or one of them); and, where present, ``num_classes``, ``n_train``,
    ``backbone``, ``classifier`` and ``preprocessing`` (input size, mean/std,
    interpolation, mask). With ``tensors``, also that they fit: a Model 1 pipeline's
    ``X_train`` (N, D) and ``y_train`` (N labels, each of ``range(len(classes))``
    present), a fine-tuned network's head (one output per class).
    """
    if meta.get("kind") not in KINDS:
        _bad("kind", f"must be one of {KINDS}, got {_short(meta.get('kind'))}")
    classes = meta.get("classes")
    if not (isinstance(classes, list) and len(classes) >= 2):
        _bad("classes", f"must be a list of 2 or more class names, got {_short(classes)}")
    if not all(isinstance(c, str) and c for c in classes):
        _bad("classes", f"must hold non-empty strings, got {_short(classes)}")
    if len(set(classes)) != len(classes):
        _bad("classes", f"names a class twice: {_short(classes)}")
    if meta.get("positive") is not None and meta["positive"] not in classes:
        _bad("positive", f"{_short(meta['positive'])} is not one of the classes {classes}")
    if "num_classes" in meta and meta["num_classes"] != len(classes):
        _bad("num_classes", f"is {_short(meta['num_classes'])} but {len(classes)} classes")
    if "n_train" in meta and not (_is_int(meta["n_train"]) and meta["n_train"] >= 0):
        _bad("n_train", f"must be a count, got {_short(meta['n_train'])}")
    backbone = {
        "name": (True, str),
        "options": (False, dict),
        "info": (False, dict),
        "head_module": (False, str, None),
    }
    _check_section(meta, "backbone", backbone)
    info = (meta.get("backbone") or {}).get("info") or {}
    if info.get("weights_digest") is not None and not isinstance(info["weights_digest"], str):
        _bad("backbone.info.weights_digest", f"must be a string, got {info['weights_digest']!r}")
    _check_section(meta, "classifier", {"name": (True, str), "options": (True, dict)})
    if "preprocessing" in meta:
        _check_preprocessing(meta["preprocessing"])
    if tensors is not None:
        _check_tensors(meta, tensors)


# -- model files ---------------------------------------------------------------
def save_model_file(path: Path, tensors: Mapping[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``tensors`` + ``meta`` (JSON) as one safetensors file, atomically.

    The file gets schema :data:`MODEL_SCHEMA`, ``tensors_sha256`` and
    ``metadata_sha256``; ValueError when ``meta`` fails :func:`check_model_meta`.
    """
    from safetensors.torch import save

    if meta.get("kind") not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {meta.get('kind')!r}")
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    body = {k: v for k, v in meta.items() if k not in ("schema", DIGEST_KEY, META_DIGEST_KEY)}
    sealed = {"schema": MODEL_SCHEMA, **body, DIGEST_KEY: tensors_digest(flat)}
    sealed = json.loads(strict_dumps(sealed))  # exactly what a reader will parse
    check_model_meta(sealed, flat)
    sealed[META_DIGEST_KEY] = metadata_digest(sealed)
    header = {META_KEY: strict_dumps(sealed, sort_keys=True)}
    path = Path(path)
    atomic_write_bytes(path, save(flat, metadata=header))
    return path


def read_model_meta(path: Path) -> dict[str, Any]:
    """Only the metadata of a model file (cheap: reads the header; tensors not verified)."""
    return _open_model(Path(path), tensors=False)[1]


def load_model_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, meta)`` of a model file; :class:`UserError` if missing, corrupt or foreign."""
    return _open_model(Path(path), tensors=True)


def _open_model(path: Path, tensors: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open

    if not path.is_file():
        what = "is a folder, not a model file" if path.is_dir() else "not found"
        raise UserError(f"model file {readable(path)} {what}")
    name = readable(path)
    hint = "re-train or point --model at a .safetensors file written by leukobench"
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            out = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}  # noqa: SIM118
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        raise UserError(
            f"model file {name} is corrupt or truncated, or not a safetensors file ({exc}); {hint}"
        ) from exc
    if META_KEY not in header:
        raise UserError(f"model file {name} is not a LeukoBench checkpoint (no metadata); {hint}")
    try:
        meta = json.loads(header[META_KEY])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UserError(
            f"model file {name} has unreadable LeukoBench metadata ({exc}); {RESAVE_HINT}"
        ) from exc
    schema = meta.get("schema") if isinstance(meta, dict) else None
    if schema not in MODEL_SCHEMAS:
        raise UserError(
            f"model file {name} has schema {schema!r}; this LeukoBench reads {MODEL_SCHEMA!r} "
            f"(and the older {SCHEMA!r})"
        )
    _verify(name, meta, out if tensors else None)
    try:
        check_model_meta(meta, out if tensors else None)
    except ValueError as exc:
        raise UserError(f"model file {name} has malformed metadata: {exc}; {RESAVE_HINT}") from exc
    if schema == SCHEMA:
        warnings.warn(
            f"model file {name} was written by an older LeukoBench (schema {SCHEMA}): its "
            "tensors are checksummed but its metadata (classes, preprocessing, classifier) "
            "is not; re-run the run that saved it (save_model = true) for a sealed file",
            LegacyModelFileWarning,
            stacklevel=3,
        )
    return out, meta


def _verify(name: str, meta: dict[str, Any], tensors: dict[str, torch.Tensor] | None) -> None:
    """UserError unless the file's digests are present (per its schema) and match."""
    want = meta.get(DIGEST_KEY)
    if not (isinstance(want, str) and _HEX64.fullmatch(want)):
        raise UserError(
            f"model file {name} carries no valid checksum ({DIGEST_KEY}): it was written "
            f"before LeukoBench checksummed model files, or it was edited; {RESAVE_HINT}"
        )
    if meta["schema"] == MODEL_SCHEMA:
        seal = meta.get(META_DIGEST_KEY)
        if not (isinstance(seal, str) and _HEX64.fullmatch(seal)):
            raise UserError(
                f"model file {name} lacks its metadata checksum ({META_DIGEST_KEY}), which "
                f"schema {MODEL_SCHEMA} requires: it was edited or damaged; {RESAVE_HINT}"
            )
        try:
            same = metadata_digest(meta) == seal
        except ValueError:  # NaN or Infinity: never written by LeukoBench
            same = False
        if not same:
            raise UserError(
                f"model file {name} is corrupt or was edited: its metadata (classes, "
                "positive class, classifier, preprocessing) does not match its checksum "
                f"({META_DIGEST_KEY}); {RESAVE_HINT}"
            )
    if tensors is not None and tensors_digest(tensors) != want:
        raise UserError(
            f"model file {name} is corrupt: its tensors do not match their checksum "
            f"({DIGEST_KEY}); {RESAVE_HINT}"
        )


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
        "kind": PIPELINE_KIND,
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
