"""Diagnose new images with a saved model (fine-tuned network or Model 1 pipeline).

Images go through exactly the preprocessing recorded in the model file
(decode to RGB, resize, optional mask, normalise). A fine-tuned network is
rebuilt from the registry with ``weights="none"`` and its saved state dict
loaded, so no pretrained file is needed; a Model 1 pipeline rebuilds its
(pretrained) backbone and refits its classifier on the stored features. The
file is verified first (:func:`bench.checkpoint.load_model_file`: tensor and
metadata checksums, metadata validated); a bad file is one :class:`UserError`
naming it.
"""

from __future__ import annotations

import errno
import os
import stat
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.checkpoint import RESAVE_HINT, load_model_file
from bench.data.validate import DEFAULT_MAX_PIXELS
from bench.device import torch_device
from bench.errors import UserError
from bench.extraction.normalise import Normaliser
from bench.readable import readable

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
# metadata a model file needs to predict, by kind (their shape: bench.checkpoint.check_model_meta)
NEEDED_KEYS = {
    "finetune": ("backbone", "preprocessing"),
    "features": ("backbone", "preprocessing", "classifier"),
}


@dataclass
class Prediction:
    """One image's diagnosis: the predicted class, its probability, and all probabilities."""

    path: str
    label: str
    probability: float
    probabilities: dict[str, float] = field(default_factory=dict)


def _os_reason(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT and path.is_symlink():
        return f"broken symbolic link (-> {readable(os.readlink(path))})"
    return f"unreadable ({exc.strerror or exc})"


def collect_images(inputs: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named directly plus image files found (recursively, sorted) under directories.

    Returns ``(paths, problems)``: every input, and every entry found under an input
    folder, is either in ``paths`` or in ``problems`` as ``(path, reason)`` -- missing
    files, broken links, symbolic-link loops, unreadable folders, files that are not
    images. Symbolic links to folders are followed, each folder once.
    """
    paths: list[Path] = []
    problems: list[tuple[str, str]] = []
    for item in inputs:
        p = Path(item)
        try:
            st = p.stat()
        except OSError as exc:
            reason = "no such file or directory" if exc.errno == errno.ENOENT else None
            if p.is_symlink() or reason is None:
                reason = _os_reason(exc, p)
            problems.append((readable(p), reason))
            continue
        if stat.S_ISDIR(st.st_mode):
            found, bad = _walk_images(p)
            if not found and not bad:
                problems.append(
                    (readable(p), "directory holds no images (" + ", ".join(IMAGE_EXTENSIONS) + ")")
                )
            paths.extend(found)
            problems.extend(bad)
        elif stat.S_ISREG(st.st_mode):
            paths.append(p)
        else:
            problems.append((readable(p), "not a regular file"))
    return paths, problems


def _walk_images(root: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files under ``root`` (sorted) and ``(path, reason)`` for everything skipped."""
    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: dict[tuple[int, int], str] = {}

    def onerror(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else root
        problems.append((readable(where), f"unreadable folder ({exc.strerror or exc})"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=True):
        here = Path(dirpath)
        try:
            st = here.stat()
        except OSError as exc:
            problems.append((readable(here), _os_reason(exc, here)))
            dirnames[:] = []
            continue
        ident = (st.st_dev, st.st_ino)
        if ident in seen:
            problems.append((readable(here), f"symbolic link loop (same folder as {seen[ident]})"))
            dirnames[:] = []
            continue
        seen[ident] = readable(here)
        dirnames.sort()
        for name in sorted(filenames):
            f = here / name
            try:
                fst = f.stat()
            except OSError as exc:
                problems.append((readable(f), _os_reason(exc, f)))
                continue
            if not stat.S_ISREG(fst.st_mode):
                problems.append((readable(f), "not a regular file"))
            elif f.suffix.lower() in IMAGE_EXTENSIONS:
                found.append(f)
            else:
                problems.append(
                    (readable(f), f"not an image file name ({', '.join(IMAGE_EXTENSIONS)})")
                )
    found.sort()
    return found, problems


class Predictor:
    """A loaded model: ``classes``, ``positive``, ``preprocessing`` and :meth:`predict_proba`."""

    kind = ""

    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused, never decoded

    def __init__(self, meta: dict[str, Any], device: torch.device) -> None:
        self.meta = meta
        self.device = device
        self.classes: list[str] = list(meta["classes"])
        self.positive: str | None = meta.get("positive")
        pre = meta["preprocessing"]
        self.input_size = int(pre["input_size"])
        self.interpolation = str(pre.get("interpolation", "bilinear"))
        self.mean, self.std = tuple(pre["mean"]), tuple(pre["std"])
        self.normaliser = Normaliser(self.mean, self.std)
        self.mask = pre.get("mask")

    def load_image(self, path: Path) -> np.ndarray:
        """Decode, resize and mask one image exactly as in training (uint8 HWC).

        ValueError, before decoding, when it has more than :attr:`max_pixels` pixels.
        """
        from PIL import Image

        from bench.data.decode import decode_resized

        with warnings.catch_warnings():  # the size is checked here, not by Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                pixels = im.width * im.height
            if pixels > self.max_pixels:
                raise ValueError(
                    f"image too large: {pixels} pixels > max_pixels={self.max_pixels} "
                    "(decompression bomb guard; raise --max-pixels to allow it)"
                )
            img = decode_resized(path, self.input_size, self.interpolation)
        if self.mask:
            from bench.data.mask import apply_mask

            img = apply_mask(img, self.mask)
        return img

    def tensor(self, batch: np.ndarray) -> torch.Tensor:
        return self.normaliser.training(batch).to(self.device)

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, k)`` for a uint8 NHWC batch."""
        raise NotImplementedError


def _build_backbone(meta: dict[str, Any], **override: Any) -> Any:
    from bench.registry import get_registry

    bb = meta["backbone"]
    options = {**bb.get("options", {}), **override}
    try:
        return get_registry().build_backbone(bb["name"], **options)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's own failure, reported in one line
        raise UserError(
            f"cannot rebuild backbone {bb['name']!r} with options {options}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


class FinetunePredictor(Predictor):
    """A fine-tuned network: architecture from the registry, weights from the file."""

    kind = "finetune"

    def __init__(
        self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], device: torch.device
    ):
        super().__init__(meta, device)
        backbone = _build_backbone(meta, weights="none")
        model = backbone.make_finetune(len(self.classes))
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise UserError(
                f"the saved weights do not fit backbone {meta['backbone']['name']!r} as built "
                f"now ({first}); was the plugin changed?"
            ) from exc
        self.model = model.to(device).eval()

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = self.model(self.tensor(batch)).float()
        return torch.softmax(logits, dim=1).cpu().numpy().astype(np.float64)


class FeaturePredictor(Predictor):
    """A Model 1 pipeline: pretrained backbone features -> classifier refitted on stored features."""

    kind = "features"

    def __init__(
        self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], device: torch.device
    ):
        super().__init__(meta, device)
        from bench.registry import get_registry

        backbone = _build_backbone(meta)
        want = meta["backbone"].get("info", {}).get("weights_digest")
        if want and backbone.weights_digest != want:
            raise UserError(
                f"backbone {meta['backbone']['name']!r} now has weights {backbone.weights_digest}, "
                f"but this pipeline was trained on features of weights {want}; "
                "point the backbone at the original weights file"
            )
        self.extractor = backbone.extractor.to(device).eval()
        X = tensors["X_train"].numpy().astype(np.float32)
        y = tensors["y_train"].numpy().astype(np.int64)
        clf_meta = meta["classifier"]
        self.classifier = get_registry().build_classifier(clf_meta["name"], **clf_meta["options"])
        self.classifier.fit(X, y)

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            feats = self.extractor(self.tensor(batch)).float().flatten(1).cpu().numpy()
        k = len(self.classes)
        clf = self.classifier
        cols = np.asarray(getattr(clf, "classes_", np.arange(k)), dtype=np.int64)
        out = np.zeros((len(feats), k), dtype=np.float64)
        if hasattr(clf, "predict_proba"):
            out[:, cols] = clf.predict_proba(feats)
            return out
        dec = np.asarray(clf.decision_function(feats), dtype=np.float64)
        if dec.ndim == 1:  # binary: score for cols[1]
            p1 = 1.0 / (1.0 + np.exp(-dec))
            out[:, cols[0]], out[:, cols[1]] = 1.0 - p1, p1
        else:
            e = np.exp(dec - dec.max(axis=1, keepdims=True))
            out[:, cols] = e / e.sum(axis=1, keepdims=True)
        return out


def load_predictor(
    path: Path, device: str = "cpu", max_pixels: int = DEFAULT_MAX_PIXELS
) -> Predictor:
    """Load a model file; :class:`UserError` if missing, corrupt, truncated or foreign."""
    dev = torch_device(device)
    tensors, meta = load_model_file(Path(path))  # digests checked, metadata validated
    predictors = {cls.kind: cls for cls in (FinetunePredictor, FeaturePredictor)}
    kind = predictors[meta["kind"]]
    missing = [key for key in NEEDED_KEYS[kind.kind] if key not in meta]
    if missing:
        raise UserError(
            f"model file {readable(path)} lacks the metadata key {missing[0]!r} needed to "
            f"predict; {RESAVE_HINT}"
        )
    try:
        predictor = kind(tensors, meta, dev)
    except UserError as exc:  # a plugin missing or changed: say which file needs it
        raise UserError(f"model file {readable(path)}: {exc}") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(
            f"model file {readable(path)} has incomplete or malformed metadata "
            f"({type(exc).__name__}: {exc}); {RESAVE_HINT}"
        ) from exc
    predictor.max_pixels = int(max_pixels)
    return predictor


def predict_paths(
    predictor: Predictor, paths: Sequence[Path], batch_size: int = 32
) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Predict every readable image; unreadable ones come back as ``(path, reason)``."""
    preds: list[Prediction] = []
    problems: list[tuple[str, str]] = []
    batch: list[np.ndarray] = []
    names: list[str] = []

    def flush() -> None:
        if not batch:
            return
        probs = predictor.predict_proba(np.stack(batch))
        for name, p in zip(names, probs):
            j = int(p.argmax())
            preds.append(
                Prediction(
                    path=name,
                    label=predictor.classes[j],
                    probability=float(p[j]),
                    probabilities={c: float(v) for c, v in zip(predictor.classes, p)},
                )
            )
        batch.clear()
        names.clear()

    for path in paths:
        try:
            img = predictor.load_image(Path(path))
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad files
            problems.append((readable(path), f"cannot read image: {type(exc).__name__}: {exc}"))
            continue
        batch.append(img)
        names.append(readable(path))
        if len(batch) >= batch_size:
            flush()
    flush()
    return preds, problems
