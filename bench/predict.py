"""Diagnose new images with a saved model (fine-tuned network or Model 1 pipeline).

Images go through exactly the preprocessing recorded in the model file
(decode to RGB, resize, optional mask, normalise). A fine-tuned network is
rebuilt from the registry with ``weights="none"`` and its saved state dict
loaded, so no pretrained file is needed; a Model 1 pipeline rebuilds its
(pretrained) backbone and refits its classifier on the stored features.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.checkpoint import load_model_file
from bench.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")


@dataclass
class Prediction:
    """One image's diagnosis: the predicted class, its probability, and all probabilities."""

    path: str
    label: str
    probability: float
    probabilities: dict[str, float] = field(default_factory=dict)


def collect_images(inputs: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named directly plus image files found (recursively, sorted) under directories.

    Returns ``(paths, problems)``; a missing input is a problem, not an exception.
    """
    paths: list[Path] = []
    problems: list[tuple[str, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not found:
                problems.append(
                    (str(p), "directory holds no images (" + ", ".join(IMAGE_EXTENSIONS) + ")")
                )
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            problems.append((str(p), "no such file or directory"))
    return paths, problems


class Predictor:
    """A loaded model: ``classes``, ``positive``, ``preprocessing`` and :meth:`predict_proba`."""

    kind = ""

    def __init__(self, meta: dict[str, Any], device: torch.device) -> None:
        self.meta = meta
        self.device = device
        self.classes: list[str] = list(meta["classes"])
        self.positive: str | None = meta.get("positive")
        pre = meta["preprocessing"]
        self.input_size = int(pre["input_size"])
        self.interpolation = str(pre.get("interpolation", "bilinear"))
        self.mean, self.std = tuple(pre["mean"]), tuple(pre["std"])
        self.mask = pre.get("mask")

    def load_image(self, path: Path) -> np.ndarray:
        """Decode, resize and mask one image exactly as in training (uint8 HWC)."""
        from bench.data.decode import decode_resized

        img = decode_resized(path, self.input_size, self.interpolation)
        if self.mask:
            from bench.data.mask import apply_mask

            img = apply_mask(img, self.mask)
        return img

    def tensor(self, batch: np.ndarray) -> torch.Tensor:
        from bench.protocols.finetune import normalise_uint8

        return normalise_uint8(batch, self.mean, self.std).to(self.device)

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


def load_predictor(path: Path, device: str = "cpu") -> Predictor:
    """Load a model file; :class:`UserError` if missing, corrupt, truncated or foreign."""
    tensors, meta = load_model_file(Path(path))
    dev = torch.device(
        "cuda"
        if device == "auto" and torch.cuda.is_available()
        else ("cpu" if device == "auto" else device)
    )
    predictors = {cls.kind: cls for cls in (FinetunePredictor, FeaturePredictor)}
    return predictors.get(meta["kind"], FeaturePredictor)(tensors, meta, dev)


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
            problems.append((str(path), f"cannot read image: {type(exc).__name__}: {exc}"))
            continue
        batch.append(img)
        names.append(str(path))
        if len(batch) >= batch_size:
            flush()
    flush()
    return preds, problems
