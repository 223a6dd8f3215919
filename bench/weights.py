"""Pretrained-weight helpers: option parsing, file digests, state-dict loading.

Backbone plugins share these rules: ``weights="imagenet"`` loads the real
pretrained weights from a local cache (downloading only when the user allows
it), ``weights=PATH`` loads a local ``.pth``/``.pt``/``.bin``/``.safetensors``
state dict, and ``weights="none"`` is a seeded random init that is marked
"not pretrained". Nothing falls back silently to random weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data.loaders import cache_root
from bench.errors import UserError

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
_DIGEST_MEMO: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class WeightsChoice:
    """A parsed ``weights`` option: ``kind`` is ``imagenet``, ``file`` or ``none``."""

    kind: str
    path: Path | None = None


def parse_weights(value: str | os.PathLike[str] | None, backbone: str) -> WeightsChoice:
    """Parse a ``weights`` option (``imagenet`` default, ``none``, or a local file)."""
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise UserError(
            f"backbone {backbone!r}: weights must be 'imagenet', 'none' or a file path, "
            f"got {value!r}"
        )
    if value is None or str(value).lower() in ("imagenet", "pretrained", "default"):
        return WeightsChoice("imagenet")
    if str(value).lower() in ("none", "random"):
        return WeightsChoice("none")
    path = Path(value).expanduser()
    if not path.is_file():
        raise UserError(
            f"backbone {backbone!r}: weights file {path} does not exist "
            "(use weights='imagenet', weights='none' or a path to a .pth/.safetensors state dict)"
        )
    if not path.name.endswith(WEIGHT_SUFFIXES):
        raise UserError(
            f"backbone {backbone!r}: weights file {path} has an unknown type "
            f"(expected one of {', '.join(WEIGHT_SUFFIXES)})"
        )
    return WeightsChoice("file", path.resolve())


def download_allowed(download: bool | None = None) -> bool:
    """``download=True`` or ``LEUKOBENCH_ALLOW_DOWNLOAD=1`` permits network downloads."""
    if download:
        return True
    return os.environ.get("LEUKOBENCH_ALLOW_DOWNLOAD", "").strip().lower() in ("1", "true", "yes")


def torch_hub_checkpoints() -> Path:
    """Where torchvision/timm keep downloaded checkpoints: ``$TORCH_HOME/hub/checkpoints``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _digest_store() -> Path:
    return cache_root() / "weights-digests.json"


def _read_store(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a weight file, cached by (path, size, mtime) in memory and on disk."""
    path = Path(path).resolve()
    st = path.stat()
    memo_key = (str(path), st.st_size, st.st_mtime_ns)
    if memo_key in _DIGEST_MEMO:
        return _DIGEST_MEMO[memo_key]
    store_path = _digest_store()
    store_key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    store = _read_store(store_path)
    digest = store.get(store_key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
        digest = h.hexdigest()
        store = _read_store(store_path)  # re-read: another run may have added entries
        store[store_key] = digest
        try:
            store_path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=store_path.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(store, f, indent=0, sort_keys=True)
            os.replace(tmp, store_path)
        except OSError:
            pass  # a read-only cache only costs a recomputation next time
    _DIGEST_MEMO[memo_key] = digest
    return digest


def load_state_dict_file(path: Path, backbone: str) -> dict[str, Any]:
    """Load a state dict from ``.safetensors`` or a torch pickle (``weights_only``)."""
    import torch

    try:
        if path.name.endswith(".safetensors"):
            from safetensors.torch import load_file

            sd: Any = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(
            f"backbone {backbone!r}: cannot read weights file {path} ({unreadable_reason(exc)}); "
            "give a .pth/.safetensors state dict of this backbone"
        ) from exc
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and wrapper in sd and isinstance(sd[wrapper], dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f"backbone {backbone!r}: {path} is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def unreadable_reason(exc: BaseException) -> str:
    """One short line for why torch/safetensors could not read a file (their texts run long)."""
    text = str(exc)
    if "Weights only load failed" in text:
        return "not a file torch reads with weights_only=True: corrupt, or pickled objects"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    return first if len(first) <= 160 else first[:157] + "..."


def load_into(model: Any, state_dict: dict[str, Any], source: Path | str, backbone: str) -> None:
    """``model.load_state_dict(state_dict)`` with a one-line UserError on mismatch."""
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:300]
        raise UserError(
            f"backbone {backbone!r}: weights {source} do not fit the architecture ({detail})"
        ) from exc


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Deterministic random init inside the block without touching the global RNG."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def random_digest(seed: int) -> str:
    """The ``weights_digest`` of a seeded random init."""
    return f"random:{seed}"
