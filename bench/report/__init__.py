"""Reports from typed result records: Table 1, Table 2, paired comparisons, estimates.

Modules: :mod:`~bench.report.estimates` (a cell's metric with its interval),
:mod:`~bench.report.methods` (cells grouped into methods, labels from protocols),
:mod:`~bench.report.table1`, :mod:`~bench.report.table2`, :mod:`~bench.report.pairs`.
"""

from bench.report.estimates import (
    EXTRA_METRICS,
    FRACTION_METRICS,
    LEAKY_NOTE,
    MACRO_ALIASES,
    METRIC_NAMES,
    NOT_PRETRAINED_NOTE,
    PAPER_METRICS,
    Estimate,
    as_cell,
    cell_estimate,
    combine,
    confusion,
    per_class_counts,
    pooled_predictions,
    recompute_metrics,
    wilson,
)
from bench.report.methods import (
    Method,
    as_run_record,
    failed_cells,
    is_complete,
    is_leaky,
    is_pretrained,
    method_label,
    methods,
    model_of,
    protocol_for,
    row_label,
    split_label,
)
from bench.report.pairs import compare_methods
from bench.report.table1 import per_class_table, table1
from bench.report.table2 import load_literature, table2

__all__ = [
    "EXTRA_METRICS",
    "FRACTION_METRICS",
    "LEAKY_NOTE",
    "MACRO_ALIASES",
    "METRIC_NAMES",
    "NOT_PRETRAINED_NOTE",
    "PAPER_METRICS",
    "Estimate",
    "Method",
    "as_cell",
    "as_run_record",
    "cell_estimate",
    "combine",
    "compare_methods",
    "confusion",
    "failed_cells",
    "is_complete",
    "is_leaky",
    "is_pretrained",
    "load_literature",
    "method_label",
    "methods",
    "model_of",
    "per_class_counts",
    "per_class_table",
    "pooled_predictions",
    "protocol_for",
    "recompute_metrics",
    "row_label",
    "split_label",
    "table1",
    "table2",
    "wilson",
]
