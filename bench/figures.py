"""Report figures (matplotlib, Agg, PNG): metric bars (paper Fig. 7), confusion matrices
(Fig. 9) and fine-tuning curves (Fig. 8) from a result record.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from bench.records import RunRecord
from bench.report import METRIC_NAMES, PAPER_METRICS, Method, as_run_record, confusion, methods
from bench.results import history_rows


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:80] or "figure"


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    tmp.replace(path)
    return path


def metric_bars(
    record: RunRecord | dict[str, Any], path: Path, metrics: tuple[str, ...] = PAPER_METRICS
) -> Path:
    """Grouped bars: one group per method, one bar per metric, 95% CI as error bars."""
    record = as_run_record(record)
    plt = _plt()
    ms = methods(record)
    n_m, n_k = len(ms), len(metrics)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * n_m + 2), 4.5))
    width = 0.8 / n_k
    x = np.arange(n_m)
    for j, metric in enumerate(metrics):
        ests = [m.estimate(metric) for m in ms]
        vals = np.array([e.mean * 100 if e.mean is not None else np.nan for e in ests])
        low = np.array([(e.mean - e.low) * 100 if e.low is not None else 0 for e in ests])
        high = np.array([(e.high - e.mean) * 100 if e.high is not None else 0 for e in ests])
        ax.bar(
            x + (j - (n_k - 1) / 2) * width,
            vals,
            width,
            yerr=np.clip(np.vstack([low, high]), 0, None),
            capsize=2,
            label=METRIC_NAMES[metric],
        )
    ax.set_xticks(x, [_tick(m) for m in ms], rotation=30, ha="right", fontsize=8)
    for tick, m in zip(ax.get_xticklabels(), ms, strict=True):
        if m.leaky:
            tick.set_color("red")
    ax.set_ylabel("%")
    lows = [m.estimate(k).low for m in ms for k in metrics]
    floor = min((v for v in lows if v is not None), default=0.5) * 100
    ax.set_ylim(max(0.0, floor - 10), 101)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    title = f"{record.dataset.get('name', '?')} - {record.run_id}"
    if any(m.leaky for m in ms):
        title += "\nred labels: LEAKY split (inflated)"
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def _tick(m: Method) -> str:
    return m.name.replace(" [LEAKY]", "\n[LEAKY]")


def confusion_figure(m: Method, path: Path) -> Path:
    """Confusion matrix summed over the method's seeds, counts and row percentages."""
    plt = _plt()
    cm = sum(confusion(c) for c in m.cells)
    classes = list(m.cells[0].classes or range(cm.shape[0]))
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2.5, 1.2 * len(classes) + 2))
    ax.imshow(cm, cmap="Blues")
    rows = cm.sum(1, keepdims=True).clip(min=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            colour = "white" if cm[i, j] > cm.max() / 2 else "black"
            text = f"{cm[i, j]}\n{100 * cm[i, j] / rows[i, 0]:.1f}%"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=9)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(m.name + f"\n{m.split_text}", fontsize=9, color="red" if m.leaky else "black")
    return _save(fig, path)


def training_curves(m: Method, path: Path) -> Path | None:
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
    plt = _plt()
    fig, (ax_acc, ax_loss) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
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
    return _save(fig, path)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (NaN-aware), same length as ``values``."""
    ok = np.isfinite(values)
    sums = np.cumsum(np.where(ok, values, 0.0))
    counts = np.cumsum(ok)
    sums[window:] = sums[window:] - sums[:-window]
    counts[window:] = counts[window:] - counts[:-window]
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def write_figures(record: RunRecord | dict[str, Any], out_dir: Path) -> list[Path]:
    """All figures for one record under ``out_dir``; returns the written paths.

    Every method gets a confusion matrix; methods whose cells carry a training
    history (a ``training`` section, e.g. fine-tuning) also get training curves.
    """
    record = as_run_record(record)
    out_dir = Path(out_dir)
    run = slug(record.run_id or "run")
    written = [metric_bars(record, out_dir / f"{run}-metrics.png")]
    seen: set[str] = set()
    for m in methods(record):
        stem = f"{run}-{slug(m.name + ' ' + m.split_text)}"
        while stem in seen:  # same label and split, other augmentation
            stem += "-b"
        seen.add(stem)
        written.append(confusion_figure(m, out_dir / f"{stem}-confusion.png"))
        curve = training_curves(m, out_dir / f"{stem}-training.png")
        if curve:
            written.append(curve)
    return written
