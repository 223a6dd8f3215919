"""Point-and-interval charts and confusion matrices (paper Fig. 7 and Fig. 9, done honestly)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.figures.style import LEAKY_COLOUR, PALETTE, plt, save
from bench.records import RunRecord
from bench.report import METRIC_NAMES, PAPER_METRICS, Method, confusion


def point_intervals(
    record: RunRecord,
    ms: list[Method],
    path: Path,
    metrics: tuple[str, ...] = PAPER_METRICS,
    dpi: int = 300,
) -> Path:
    """One panel per metric: each method's estimate as a dot, its 95% CI as a whisker.

    Dots encode position, not length, so the axis may start above zero without
    exaggerating differences; it always shows the whole interval. LEAKY methods
    are drawn hollow in vermilion and labelled.
    """
    pyplot = plt()
    n = len(ms)
    fig, axes = pyplot.subplots(
        1, len(metrics), figsize=(2.3 * len(metrics) + 2.2, 0.34 * n + 1.3), sharey=True
    )
    axes = np.atleast_1d(axes)
    y = np.arange(n)[::-1]
    for ax, metric in zip(axes, metrics, strict=True):
        lows, highs = [], []
        for k, m in enumerate(ms):
            est = m.estimate(metric)
            if est.mean is None:
                continue
            colour = LEAKY_COLOUR if m.leaky else PALETTE[0]
            lo = est.low if est.low is not None else est.mean
            hi = est.high if est.high is not None else est.mean
            ax.plot([100 * lo, 100 * hi], [y[k], y[k]], color=colour, linewidth=1.4)
            ax.plot(
                100 * est.mean,
                y[k],
                "o",
                color=colour,
                markerfacecolor="white" if m.leaky else colour,
                markersize=5,
            )
            lows.append(100 * lo)
            highs.append(100 * hi)
        if lows:
            span = max(max(highs) - min(lows), 2.0)
            ax.set_xlim(max(0.0, min(lows) - 0.15 * span), min(100.0, max(highs) + 0.15 * span))
        ax.set_xlabel(f"{METRIC_NAMES[metric]} (%)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, [m.name for m in ms], fontsize=8)
    for tick, m in zip(axes[0].get_yticklabels(), ms, strict=True):
        if m.leaky:
            tick.set_color(LEAKY_COLOUR)
    fig.suptitle(
        f"{record.dataset_name}: estimates with 95% confidence intervals",
        fontsize=9,
        x=0.02,
        ha="left",
    )
    return save(fig, path, dpi)


def confusion_figure(m: Method, path: Path, dpi: int = 300) -> Path:
    """Confusion matrix summed over the method's seeds: counts and row percentages."""
    pyplot = plt()
    cm = sum(confusion(c) for c in m.cells)
    classes = list(m.cells[0].classes or range(cm.shape[0]))
    size = 1.1 * len(classes) + 2.2
    fig, ax = pyplot.subplots(figsize=(size, size - 0.3))
    rows = cm.sum(1, keepdims=True).clip(min=1)
    share = cm / rows
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            colour = "white" if share[i, j] > 0.5 else "black"
            text = f"{cm[i, j]}\n{100 * share[i, j]:.1f}%"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=9)
    ax.set_xticks(range(len(classes)), classes, rotation=30 if len(classes) > 3 else 0)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (row % of the true class)")
    ax.spines[:].set_visible(False)
    ax.set_title(m.name, fontsize=9, color=LEAKY_COLOUR if m.leaky else "black")
    return save(fig, path, dpi)


def scores_by_fold(m: Method) -> list[tuple[np.ndarray, np.ndarray, int | None]]:
    """(y_true, score, positive index) per fold of every seed; folds without scores left out."""
    out = []
    for cell in m.cells:
        for fold in cell.folds:
            if fold.score is None:
                continue
            out.append(
                (np.asarray(fold.y_true), np.asarray(fold.score, float), cell.positive_index)
            )
    return out


def _binary(y: np.ndarray, s: np.ndarray, pos: int | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels 1 = class ``k`` and that class's score (binary scores are the positive class's)."""
    if s.ndim == 1:
        score = s if k == (1 if pos is None else pos) else 1 - s
        return (y == k).astype(int), score
    return (y == k).astype(int), s[:, k]


def roc_pr_figures(m: Method, roc_path: Path, pr_path: Path, dpi: int = 300) -> list[Path]:
    """ROC and precision-recall curves from stored scores: pooled bold, each fold thin."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    folds = scores_by_fold(m)
    if not folds:
        return []
    classes = list(m.cells[0].classes)
    pos = m.cells[0].positive_index
    binary = folds[0][1].ndim == 1
    targets = [1 if pos is None else pos] if binary else list(range(len(classes)))
    pyplot = plt()
    written = []
    for kind, path in (("roc", roc_path), ("pr", pr_path)):
        fig, ax = pyplot.subplots(figsize=(4.6, 4.2))
        for colour_i, k in enumerate(targets):
            colour = PALETTE[colour_i % len(PALETTE)]
            ys, ss = [], []
            for y, s, p in folds:
                yb, sb = _binary(y, s, p, k)
                ys.append(yb)
                ss.append(sb)
                if len(set(yb.tolist())) < 2:
                    continue
                if kind == "roc":
                    fpr, tpr, _ = roc_curve(yb, sb)
                    ax.plot(fpr, tpr, color=colour, alpha=0.3, linewidth=0.7)
                else:
                    prec, rec, _ = precision_recall_curve(yb, sb)
                    ax.plot(rec, prec, color=colour, alpha=0.3, linewidth=0.7)
            y_all, s_all = np.concatenate(ys), np.concatenate(ss)
            if len(set(y_all.tolist())) < 2:
                continue
            name = classes[k] if k < len(classes) else str(k)
            if kind == "roc":
                fpr, tpr, _ = roc_curve(y_all, s_all)
                ax.plot(
                    fpr,
                    tpr,
                    color=colour,
                    linewidth=2,
                    label=f"{name}: pooled AUC {auc(fpr, tpr):.3f}",
                )
            else:
                prec, rec, _ = precision_recall_curve(y_all, s_all)
                ap = average_precision_score(y_all, s_all)
                ax.plot(rec, prec, color=colour, linewidth=2, label=f"{name}: pooled AP {ap:.3f}")
                ax.axhline(y_all.mean(), color=colour, linestyle=":", linewidth=0.8)
        if kind == "roc":
            ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
            ax.set_xlabel("false positive rate (1 - specificity)")
            ax.set_ylabel("true positive rate (recall)")
        else:
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.legend(fontsize=7, loc="lower right" if kind == "roc" else "lower left")
        title = ("ROC" if kind == "roc" else "Precision-recall") + f" - {m.name}"
        ax.set_title(
            title + "\nthin: one fold each", fontsize=9, color=LEAKY_COLOUR if m.leaky else "black"
        )
        written.append(save(fig, path, dpi))
    return written


def annotate(ax: Any, text: str) -> None:
    ax.text(0.01, 0.99, text, transform=ax.transAxes, va="top", fontsize=7, color="grey")
