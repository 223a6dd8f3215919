"""Fine-tuning curves (paper Fig. 8): loss and accuracy per iteration, per fold."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.figures.style import plt, save
from bench.report import Method
from bench.results import history_rows


def training_curves(m: Method, path: Path, dpi: int = 300) -> Path | None:
    """Loss and accuracy per iteration for a fine-tuned method (None without history)."""
    series = []
    for cell in m.cells:
        training = cell.training or {}
        folds = [history_rows(h) for h in training.get("fold_histories") or [] if h]
        if len(folds) > 1:
            series += [(f"seed {cell.seed} fold {f}", h) for f, h in enumerate(folds)]
        elif training.get("history") or folds:
            history = history_rows(training.get("history")) or folds[0]
            series.append((f"seed {cell.seed}", history))
    if not series:
        return None
    fig, (ax_acc, ax_loss) = plt().subplots(2, 1, figsize=(7, 5.5), sharex=True)
    for name, hist in series:
        it = np.array([h.get("iteration", i + 1) for i, h in enumerate(hist)])
        acc = np.array([100 * h.get("accuracy", np.nan) for h in hist], dtype=float)
        loss = np.array([h.get("loss", np.nan) for h in hist], dtype=float)
        window = max(1, len(hist) // 100)
        if window > 1:  # per-iteration values of a 5-image batch are noise: show them faintly
            if any("accuracy" in h for h in hist):
                ax_acc.plot(it, acc, alpha=0.15, linewidth=0.5)
            ax_loss.plot(it, loss, alpha=0.15, linewidth=0.5)
            acc, loss = _smooth(acc, window), _smooth(loss, window)
            name = f"{name} (mean of {window} iterations)"
        if any("accuracy" in h for h in hist):
            ax_acc.plot(it, acc, label=name)
        ax_loss.plot(it, loss, label=name)
    ax_acc.set_ylabel("accuracy (%)")
    ax_loss.set_ylabel("loss")
    ax_loss.set_xlabel("iteration")
    if len(series) <= 10:
        ax_acc.legend(fontsize=7)
    ax_acc.set_title(f"Training - {m.name}", fontsize=9)
    ax_acc.grid(alpha=0.3)
    ax_loss.grid(alpha=0.3)
    return save(fig, path, dpi)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (NaN-aware), same length as ``values``."""
    ok = np.isfinite(values)
    sums = np.cumsum(np.where(ok, values, 0.0))
    counts = np.cumsum(ok)
    sums[window:] = sums[window:] - sums[:-window]
    counts[window:] = counts[window:] - counts[:-window]
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
