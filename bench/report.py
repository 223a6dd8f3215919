"""Table 1 (per-method metrics, as in the paper) and Table 2 (literature) from result records.

Rows are *methods*: cells of one record that share protocol, backbone, classifier
and split, aggregated over seeds. A single seed shows the pooled metric with its
stored 95% CI; several seeds show the mean over seeds with a t-interval across
seeds. Cells of a leaky split are marked LEAKY everywhere.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import UserError
from bench.metrics import compute_metrics, confusion_matrix, wilson_counts
from bench.metrics import per_class_table as metrics_per_class_table
from bench.render import Table
from bench.stats import wilson_interval

PAPER_METRICS = ("precision", "recall", "accuracy", "specificity")
EXTRA_METRICS = ("f1", "mcc", "roc_auc", "balanced_accuracy")
# multi-class records store macro averages under these names (bench.metrics)
MACRO_ALIASES = {"precision": "precision_macro", "recall": "recall_macro", "f1": "f1_macro"}
FRACTION_METRICS = ("mcc", "roc_auc")  # shown as fractions, not percent
METRIC_NAMES = {
    "precision": "Precision",
    "recall": "Recall",
    "accuracy": "Accuracy",
    "specificity": "Specificity",
    "f1": "F1",
    "mcc": "MCC",
    "roc_auc": "ROC AUC",
    "balanced_accuracy": "Balanced acc.",
}
LEAKY_NOTE = (
    "LEAKY: the split put augmented copies of one source image on both sides "
    "(the paper's augment-then-split order); these numbers are inflated and not "
    "comparable with leakage-safe rows."
)
NOT_PRETRAINED_NOTE = "not pretrained: the backbone ran with random weights."


# --------------------------------------------------------------------------- estimates


@dataclass(frozen=True)
class Estimate:
    """A metric value with its 95% interval (fractions, not percent)."""

    mean: float | None
    low: float | None = None
    high: float | None = None
    n_seeds: int = 1

    def fmt(self, percent: bool = True) -> str:
        if self.mean is None or math.isnan(self.mean):
            return "-"
        scale, digits = (100.0, 1) if percent else (1.0, 3)
        text = f"{self.mean * scale:.{digits}f}"
        if self.low is not None and self.high is not None:
            text += f" [{self.low * scale:.{digits}f}, {self.high * scale:.{digits}f}]"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci": [self.low, self.high], "n_seeds": self.n_seeds}


def wilson(successes: float, n: float) -> tuple[float, float]:
    """Wilson score 95% interval for a proportion (0/0 -> (nan, nan))."""
    return wilson_interval(successes, n)


def pooled_predictions(cell: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """(y_true, y_pred, scores) over all folds of a cell."""
    y_true: list[int] = []
    y_pred: list[int] = []
    scores: list[Any] = []
    for fold in cell.get("folds") or []:
        y_true += list(fold.get("y_true") or [])
        y_pred += list(fold.get("y_pred") or [])
        score = fold.get("score")
        scores += list(score) if score is not None else [None] * len(fold.get("y_true") or [])
    return np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int), scores


def _n_classes(cell: dict[str, Any]) -> int:
    return max(len(cell.get("classes") or []), 2)


def _positive_index(cell: dict[str, Any]) -> int | None:
    """Index of the positive class of a binary cell (default 1); None for multi-class."""
    classes = list(cell.get("classes") or [])
    if _n_classes(cell) != 2:
        return None
    return classes.index(cell["positive"]) if cell.get("positive") in classes else 1


def confusion(cell: dict[str, Any]) -> np.ndarray:
    """Pooled confusion matrix (rows true, columns predicted), from stored or recomputed."""
    stored = (cell.get("metrics") or {}).get("confusion")
    if stored:
        return np.asarray(stored, dtype=int)
    y_true, y_pred, _ = pooled_predictions(cell)
    return confusion_matrix(y_true, y_pred, len(cell.get("classes") or []) or 2)


def recompute_metrics(cell: dict[str, Any]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Pooled metrics (:func:`bench.metrics.compute_metrics`) and Wilson CIs from a cell's
    stored predictions.

    Binary: positive class from ``cell["positive"]``. Multi-class: macro averages, also
    under the plain names (``precision`` = ``precision_macro``) plus macro specificity.
    """
    y_true, y_pred, scores = pooled_predictions(cell)
    k, pos = _n_classes(cell), _positive_index(cell)
    score = None if not scores or any(s is None for s in scores) else np.asarray(scores, float)
    pooled = compute_metrics(y_true, y_pred, score, n_classes=k, positive_index=pos)
    cm = confusion_matrix(y_true, y_pred, k)
    ci = {name: list(wilson(*counts)) for name, counts in wilson_counts(cm, pos).items()}
    if pos is None:
        for name, macro in MACRO_ALIASES.items():
            pooled[name] = pooled[macro]
        per = per_class_counts(cm)
        pooled["specificity"] = float(np.nanmean([row["specificity"] for row in per]))
    return pooled, ci


def _one_vs_rest(cm: np.ndarray, i: int) -> np.ndarray:
    """2x2 confusion matrix of class ``i`` (index 1) against all others (index 0)."""
    tp = cm[i, i]
    fn = cm[i].sum() - tp
    fp = cm[:, i].sum() - tp
    tn = cm.sum() - tp - fn - fp
    return np.array([[tn, fp], [fn, tp]])


def per_class_counts(cm: np.ndarray) -> list[dict[str, Any]]:
    """One-vs-rest precision/recall/specificity/f1 (+ Wilson CI, support) per class."""
    table = metrics_per_class_table(cm)
    out = []
    for i in range(cm.shape[0]):
        row: dict[str, Any] = dict(table[str(i)])
        counts = wilson_counts(_one_vs_rest(cm, i), 1)
        for name in ("precision", "recall", "specificity"):
            row[f"{name}_ci"] = wilson(*counts[name])
        row["f1_ci"] = (None, None)
        out.append(row)
    return out


def cell_estimate(cell: dict[str, Any], metric: str) -> Estimate:
    """The pooled ``metric`` of one cell with its stored CI (recomputed when absent)."""
    metrics = cell.get("metrics") or {}
    pooled = metrics.get("pooled") or {}
    key = metric if metric in pooled else MACRO_ALIASES.get(metric)
    if key in pooled:
        ci = (metrics.get("ci") or {}).get(key)
        value = pooled.get(key)
    else:
        recomputed, cis = recompute_metrics(cell)
        value, ci = recomputed.get(metric), cis.get(metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Estimate(None)
    low, high = ci if ci and len(ci) == 2 and None not in ci else (None, None)
    return Estimate(float(value), low, high)


def combine(estimates: Sequence[Estimate]) -> Estimate:
    """One estimate over seeds: itself for one seed; mean and t-interval for several."""
    usable = [e for e in estimates if e.mean is not None and not math.isnan(e.mean)]
    if not usable:
        return Estimate(None, n_seeds=len(estimates))
    if len(usable) == 1:
        return usable[0]
    from scipy import stats

    values = np.asarray([e.mean for e in usable], dtype=float)
    mean = float(values.mean())
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return Estimate(mean, max(0.0, mean - half), min(1.0, mean + half), n_seeds=len(usable))


# --------------------------------------------------------------------------- methods


def split_label(split: dict[str, Any] | None) -> str:
    """'grouped 10-fold', 'paper-leaky hold-out 80/20', ..."""
    split = split or {}
    kind = str(split.get("kind") or "?")
    prefix = kind.replace("-kfold", "").replace("-holdout", "")
    holdout = split.get("holdout")
    if holdout or kind.endswith("holdout"):
        test = float(holdout) if holdout else 0.2
        test = test / 100 if test > 1 else test
        train = round(100 * (1 - test))
        return f"{prefix} hold-out {train}/{100 - train}"
    folds = split.get("folds")
    return f"{prefix} {folds}-fold" if folds else prefix


def is_leaky(cell: dict[str, Any]) -> bool:
    split = cell.get("split") or {}
    return bool(split.get("leaky")) or split.get("kind") == "paper-leaky"


def is_complete(cell: dict[str, Any]) -> bool:
    """A cell that finished and stored its fold predictions."""
    return cell.get("status", "complete") == "complete" and bool(cell.get("folds"))


def is_pretrained(cell: dict[str, Any]) -> bool:
    return (cell.get("backbone_info") or {}).get("pretrained") is not False


@dataclass
class Method:
    """Cells of one record that differ only by seed."""

    protocol: str
    backbone: str
    classifier: str
    label: str
    split: dict[str, Any]
    cells: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model(self) -> str:
        return "Model 2" if self.protocol == "finetune" else "Model 1"

    @property
    def leaky(self) -> bool:
        return any(is_leaky(c) for c in self.cells)

    @property
    def pretrained(self) -> bool:
        return all(is_pretrained(c) for c in self.cells)

    @property
    def seeds(self) -> list[Any]:
        return [c.get("seed") for c in self.cells]

    @property
    def split_text(self) -> str:
        return split_label(self.split)

    @property
    def name(self) -> str:
        """Row label: 'alexnet + SVM (cubic)' or 'fine-tuned alexnet (hold-out 80/20)'."""
        if self.protocol == "finetune":
            kind = self.split_text.split(" ", 1)[-1]
            text = f"fine-tuned {self.backbone} ({kind})"
        else:
            text = f"{self.backbone} + {self.label}"
        if not self.pretrained:
            text += " (not pretrained)"
        if self.leaky:
            text += " [LEAKY]"
        return text

    def estimate(self, metric: str) -> Estimate:
        return combine([cell_estimate(c, metric) for c in self.cells])

    def n_evaluated(self) -> int:
        """Predictions per seed (test samples pooled over folds)."""
        y_true, _, _ = pooled_predictions(self.cells[0])
        return int(len(y_true))


def methods(record: dict[str, Any]) -> list[Method]:
    """Complete cells grouped into methods: Model 1 rows first, then Model 2, in record order."""
    found: dict[tuple, Method] = {}
    for cell in record.get("cells") or []:
        if not is_complete(cell):
            continue
        split = cell.get("split") or {}
        key = (
            cell.get("protocol"),
            cell.get("backbone"),
            cell.get("classifier"),
            split.get("kind"),
            split.get("folds"),
            split.get("holdout"),
            str(cell.get("augmentation")),
        )
        if key not in found:
            found[key] = Method(
                protocol=str(cell.get("protocol") or "features"),
                backbone=str(cell.get("backbone") or "?"),
                classifier=str(cell.get("classifier") or "?"),
                label=str(cell.get("label") or cell.get("classifier") or "?"),
                split=split,
            )
        found[key].cells.append(cell)
    ordered = list(found.values())
    return sorted(ordered, key=lambda m: m.model)  # stable: keeps record order within a model


def failed_cells(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in record.get("cells") or [] if c.get("status", "complete") != "complete"]


def _caption(record: dict[str, Any], ms: list[Method]) -> str:
    ds = record.get("dataset") or {}
    parts = [f"Dataset {ds.get('name', '?')} (n={ds.get('n_images', '?')} images"]
    counts = sorted({m.n_evaluated() for m in ms} - {0, None})
    if counts and counts != [ds.get("n_images")]:
        shown = (
            " to ".join(str(n) for n in (counts[0], counts[-1]) if n)
            if len(counts) > 1
            else str(counts[0])
        )
        parts[-1] += f", {shown} test predictions per method"
    parts[-1] += ")"
    if ds.get("positive") and len(ds.get("classes") or []) <= 2:
        parts.append(f"positive class {ds['positive']!r}")
    kinds = sorted({m.split_text for m in ms})
    parts.append(f"split: {', '.join(kinds) or '-'}")
    augs = sorted({_aug_text(c.get("augmentation")) for m in ms for c in m.cells})
    if augs and augs != ["none"]:
        parts.append(f"augmentation: {', '.join(augs)}")
    parts.append(f"seeds: {', '.join(str(s) for s in record.get('seeds') or []) or '-'}")
    parts.append(f"run {record.get('run_id', '?')}")
    multi_seed = any(len(m.cells) > 1 for m in ms)
    how = "mean over seeds [95% t-interval]" if multi_seed else "pooled over folds [95% CI]"
    parts.append(f"values in %: {how}")
    if record.get("status") == "incomplete":
        parts.append(f"INCOMPLETE run: {len(failed_cells(record))} cell(s) failed or missing")
    return "; ".join(parts) + "."


def _aug_text(aug: dict[str, Any] | None) -> str:
    if not aug:
        return "none"
    copies = aug.get("copies")
    return f"{aug.get('scheme', '?')} x{copies}" if copies else str(aug.get("scheme", "?"))


def _footnotes(ms: list[Method]) -> list[str]:
    notes = []
    if any(m.leaky for m in ms):
        notes.append(LEAKY_NOTE)
    if any(not m.pretrained for m in ms):
        notes.append(NOT_PRETRAINED_NOTE)
    return notes


def _style(m: Method) -> str | None:
    return "bold red" if m.leaky else ("yellow" if not m.pretrained else None)


def table1(record: dict[str, Any], extra: Iterable[str] = ()) -> list[Table]:
    """Table 1 for one record; multi-class records add a per-class table."""
    ms = methods(record)
    if not ms:
        raise UserError(f"run {record.get('run_id', '?')}: no complete cells to report")
    multi = (
        len((record.get("dataset") or {}).get("classes") or ms[0].cells[0].get("classes") or []) > 2
    )
    metrics = list(PAPER_METRICS) + [m for m in extra if m not in PAPER_METRICS]
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise UserError(f"unknown metric(s) {unknown}; choose from {', '.join(METRIC_NAMES)}")
    macro = {"precision", "recall", "specificity", "f1"} if multi else set()
    headers = ["Method", "Split"] + [
        METRIC_NAMES[m] + (" (macro)" if m in macro else "") for m in metrics
    ]
    rows, data = [], []
    for m in ms:
        ests = {name: m.estimate(name) for name in metrics}
        rows.append(
            [m.name, m.split_text]
            + [ests[name].fmt(percent=name not in FRACTION_METRICS) for name in metrics]
        )
        data.append(
            {
                "model": m.model,
                "method": m.name,
                "protocol": m.protocol,
                "backbone": m.backbone,
                "classifier": m.classifier,
                "split": m.split,
                "leaky": m.leaky,
                "pretrained": m.pretrained,
                "seeds": m.seeds,
                "n": m.n_evaluated(),
                "metrics": {name: est.as_dict() for name, est in ests.items()},
            }
        )
    title = f"Table 1. Performance per method - {record.get('run_id', '?')}"
    tables = [
        Table(
            key="table1",
            title=title,
            headers=headers,
            rows=rows,
            data=data,
            caption=_caption(record, ms),
            footnotes=_footnotes(ms),
            groups=[m.model for m in ms],
            styles=[_style(m) for m in ms],
        )
    ]
    if multi:
        tables.append(per_class_table(record, ms))
    return tables


def per_class_table(record: dict[str, Any], ms: list[Method]) -> Table:
    """Per-class one-vs-rest precision, recall, specificity, F1 for every method."""
    names = ("precision", "recall", "specificity", "f1")
    rows, data, groups, styles = [], [], [], []
    for m in ms:
        classes = list(m.cells[0].get("classes") or [])
        per_seed = [per_class_counts(confusion(c)) for c in m.cells]
        for i, cls in enumerate(classes):
            ests = {
                n: combine([Estimate(p[i][n], *p[i][f"{n}_ci"]) for p in per_seed]) for n in names
            }
            support = per_seed[0][i]["support"]
            rows.append([m.name, str(cls)] + [ests[n].fmt() for n in names] + [str(support)])
            data.append(
                {
                    "method": m.name,
                    "class": cls,
                    "support": support,
                    "metrics": {n: e.as_dict() for n, e in ests.items()},
                }
            )
            groups.append(m.model)
            styles.append(_style(m))
    return Table(
        key="table1-per-class",
        title=f"Table 1b. Per-class metrics (one-vs-rest) - {record.get('run_id', '?')}",
        headers=["Method", "Class", "Precision", "Recall", "Specificity", "F1", "Support"],
        rows=rows,
        data=data,
        caption=_caption(record, ms),
        footnotes=_footnotes(ms),
        groups=groups,
        styles=styles,
    )


# --------------------------------------------------------------------------- Table 2


def load_literature(path: Path | None = None) -> list[dict[str, Any]]:
    """Literature entries (``[[work]]`` tables) from ``bench/literature.toml`` or ``path``."""
    try:
        if path is None:
            text = resources.files("bench").joinpath("literature.toml").read_text("utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        works = tomllib.loads(text).get("work", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(
            f"{path or 'bench/literature.toml'}: cannot read literature ({exc})"
        ) from None
    required = ("authors", "year", "n_images", "accuracy", "split", "method", "dataset")
    for i, work in enumerate(works):
        missing = [k for k in required if k not in work]
        if missing:
            raise UserError(f"literature work #{i + 1}: missing key(s) {missing}")
    return works


def table2(
    records: Sequence[dict[str, Any]], literature: list[dict[str, Any]] | None = None
) -> Table:
    """The literature's accuracies beside each run's best accuracy per protocol and split."""
    works = load_literature() if literature is None else literature
    headers = [
        "Work",
        "Year",
        "Dataset",
        "Images",
        "Split protocol",
        "Method",
        "Accuracy (%)",
        "Comparability",
    ]
    rows, data, styles = [], [], []
    for w in works:
        rows.append(
            [
                str(w["authors"]),
                str(w["year"]),
                str(w["dataset"]),
                str(w["n_images"]),
                str(w["split"]),
                str(w["method"]),
                f"{float(w['accuracy']) * 100:.2f}".rstrip("0").rstrip("."),
                str(w.get("note", "")),
            ]
        )
        data.append({"source": "literature", **w})
        styles.append("bold red" if w.get("leaky") else None)
    leaky_any = any(w.get("leaky") for w in works)
    for record in records:
        ds = record.get("dataset") or {}
        best: dict[tuple[str, str], tuple[Method, Estimate]] = {}
        for m in methods(record):
            est = m.estimate("accuracy")
            if est.mean is None:
                continue
            key = (m.protocol, m.split_text)
            if key not in best or est.mean > (best[key][1].mean or -1):
                best[key] = (m, est)
        for (_protocol, split), (m, est) in best.items():
            n_eval = m.n_evaluated()
            images = str(ds.get("n_images", "?"))
            if n_eval and n_eval != ds.get("n_images"):
                images += f" ({n_eval} evaluated)"
            aug = _aug_text(m.cells[0].get("augmentation"))
            note = (
                "LEAKY split: inflated, comparable only with other leaky protocols"
                if m.leaky
                else "leakage-safe: no source image on both sides of a split"
            )
            rows.append(
                [
                    f"This run ({record.get('run_id', '?')})",
                    str(record.get("started", ""))[:4],
                    str(ds.get("name", "?")),
                    images,
                    split + (f", augmentation {aug}" if aug != "none" else ""),
                    m.name,
                    est.fmt(),
                    note,
                ]
            )
            data.append(
                {
                    "source": "run",
                    "run_id": record.get("run_id"),
                    "dataset": ds.get("name"),
                    "n_images": ds.get("n_images"),
                    "n_evaluated": n_eval,
                    "split": m.split,
                    "protocol": m.protocol,
                    "method": m.name,
                    "leaky": m.leaky,
                    "accuracy": est.as_dict(),
                }
            )
            styles.append(_style(m))
            leaky_any = leaky_any or m.leaky
    return Table(
        key="table2",
        title="Table 2. Accuracy beside the literature",
        headers=headers,
        rows=rows,
        data=data,
        caption=(
            "Literature values as published (bench/literature.toml); this run's best accuracy "
            "per protocol and split. Only rows with the same dataset and split protocol are comparable."
        ),
        footnotes=[LEAKY_NOTE] if leaky_any else [],
        styles=styles,
    )


# --------------------------------------------------------------------------- paired tests


def _aligned(cell: dict[str, Any]) -> list[tuple[list[int], np.ndarray]]:
    """Per fold: (test_index, correct) for a cell."""
    out = []
    for fold in cell.get("folds") or []:
        y_true = np.asarray(fold.get("y_true") or [], dtype=int)
        y_pred = np.asarray(fold.get("y_pred") or [], dtype=int)
        out.append((list(fold.get("test_index") or []), y_true == y_pred))
    return out


def compare_methods(record: dict[str, Any]) -> Table:
    """Pairwise paired tests between cells evaluated on the same folds (same seed).

    McNemar on pooled predictions; Nadeau-Bengio corrected t-test on fold accuracies.
    """
    try:
        from bench import stats
    except ImportError as exc:
        raise UserError(f"--compare-methods needs bench.stats ({exc}); update LeukoBench") from None
    cells = [c for m in methods(record) for c in m.cells]
    name_of = {id(c): m.name for m in methods(record) for c in m.cells}
    rows, data = [], []
    for i, a in enumerate(cells):
        for b in cells[i + 1 :]:
            if a.get("seed") != b.get("seed"):
                continue
            fa, fb = _aligned(a), _aligned(b)
            if len(fa) != len(fb) or any(x[0] != y[0] for x, y in zip(fa, fb, strict=True)):
                continue  # not the same folds: a paired test would be meaningless
            ca = np.concatenate([x[1] for x in fa])
            cb = np.concatenate([y[1] for y in fb])
            mc_stat, mc_p = stats.mcnemar(ca, cb)
            t, tp = (math.nan, math.nan)
            if len(fa) > 1:
                n_samples = len((a.get("samples") or {}).get("source") or []) or len(ca)
                n_test = float(np.mean([len(x[0]) for x in fa]))
                t, tp = stats.corrected_ttest(
                    [float(x[1].mean()) for x in fa],
                    [float(y[1].mean()) for y in fb],
                    n_samples - n_test,
                    n_test,
                )
            row = {
                "a": name_of[id(a)],
                "b": name_of[id(b)],
                "seed": a.get("seed"),
                "accuracy_a": float(ca.mean()),
                "accuracy_b": float(cb.mean()),
                "mcnemar_stat": float(mc_stat),
                "mcnemar_p": float(mc_p),
                "ttest_t": float(t),
                "ttest_p": float(tp),
                "folds": len(fa),
            }
            data.append(row)
            rows.append(
                [
                    row["a"],
                    row["b"],
                    str(row["seed"]),
                    f"{row['accuracy_a'] * 100:.1f}",
                    f"{row['accuracy_b'] * 100:.1f}",
                    f"{mc_stat:.2f}",
                    _p(mc_p),
                    "-" if math.isnan(t) else f"{t:.2f}",
                    _p(tp),
                ]
            )
    return Table(
        key="compare-methods",
        title=f"Paired comparisons - {record.get('run_id', '?')}",
        headers=[
            "Method A",
            "Method B",
            "Seed",
            "Acc A (%)",
            "Acc B (%)",
            "McNemar",
            "p",
            "corr. t",
            "p",
        ],
        rows=rows,
        data=data,
        caption=(
            "Pairs evaluated on identical folds. McNemar: pooled predictions; corrected t: "
            "Nadeau-Bengio over fold accuracies (k-fold only). p-values are not adjusted "
            "for multiple comparisons."
        ),
    )


def _p(p: float) -> str:
    if p is None or math.isnan(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"
