"""Exact re-implementation of scikit-learn's best-first Gini decision tree.

:func:`build_tree` grows the tree that ``DecisionTreeClassifier(criterion="gini",
splitter="best", max_features=None, max_leaf_nodes=L)`` grows (scikit-learn
1.9's ``BestFirstTreeBuilder`` + ``BestSplitter`` + ``Gini``): same features,
thresholds, impurities, node sizes and values, node for node. Instead of
sorting every feature at every node it sorts every feature once
(:class:`~plugins.fast_estimators.presort.Presort`); each node keeps, per
feature, its samples in sorted order, and a split partitions them in place,
stably (:func:`~.tree_kernels.partition_node`). The split search and the
partition are compiled loops (:mod:`.tree_kernels`); this module keeps the
frontier, the nodes and the tie-breaking.

Data layout: for each feature the samples whose value exceeds the column
minimum ("explicit" entries, sorted by value) are stored; the node's other
samples sit at the minimum (ReLU features are ~65% zeros, so this skips most
of the work). Each entry packs its sample, its class, its value group ``G``
(dense rank of distinct values, 0 = the column minimum) and ``LG``, the number
of groups whose ``float32(v + 1e-7)`` lies below its value, so scikit-learn's
"``v[p] > v[p-1] + FEATURE_THRESHOLD``" test is the integer test ``G[p-1] <
LG[p]``.

Exactness rules reproduced (see sklearn/tree/_splitter.pyx, _partitioner.pyx,
_criterion.pyx, _tree.pyx, _utils.pyx):

* split positions: between distinct sorted values with ``Xf[p] > Xf[p-1] + 1e-7``
  (float32 arithmetic), both sides ``>= min_samples_leaf``; threshold
  ``Xf[p-1] / 2 + Xf[p] / 2`` in float64;
* the proxy ``-n_R * gini_R - n_L * gini_L`` and impurities in float64 with the
  Criterion's operation order (runs of positions that cannot reach the best so
  far are skipped on a rigorous bound, the others scored exactly), the first
  best in visit order wins;
* visit order: the splitter's Fisher-Yates over its persistent ``features``
  array driven by its xorshift ``rand_r`` state (``d`` draws per searched
  node, whatever is constant); only simulated when features tie exactly;
* best-first frontier: libstdc++ ``push_heap``/``pop_heap`` on improvement,
  children searched left then right when their parent is expanded; nodes that
  are leaves up front (pure, too small, too deep) consume no draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from plugins.fast_estimators.presort import Presort
from plugins.fast_estimators.tree_kernels import (
    partition_node,
    root_entries,
    scan_binary,
    scan_classes,
)
from plugins.fast_estimators.tree_shuffle import FeatureShuffle

EPSILON = float(np.finfo(np.float64).eps)
LAYOUT_BITS = 63  # an entry packs (LG, G, class, sample) into one int64
TREE_LEAF = -1
TREE_UNDEFINED = -2


class LayoutTooWide(ValueError):
    """The data is too large for the packed entries (from ~2^19-2^20 rows): use scikit-learn."""


def layout_fits(presort: Presort, n_rows: int, n_classes: int) -> bool:
    """Whether an entry of ``n_rows`` samples and ``n_classes`` classes fits ``LAYOUT_BITS``."""
    ybits = max(1, int(n_classes - 1).bit_length())
    return 2 * presort.gbits + ybits + max(1, int(n_rows).bit_length()) <= LAYOUT_BITS


# -- the builder -------------------------------------------------------------------


@dataclass
class TreeArrays:
    """What ``sklearn.tree._tree.Tree.__setstate__`` takes (``nodes``: NODE_DTYPE fields)."""

    left_child: np.ndarray
    right_child: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    impurity: np.ndarray
    n_node_samples: np.ndarray
    weighted_n_node_samples: np.ndarray
    missing_go_to_left: np.ndarray
    value: np.ndarray  # (node_count, 1, n_classes)
    max_depth: int


@dataclass
class _Node:
    node_id: int
    depth: int
    impurity: float
    samples: np.ndarray
    counts: np.ndarray
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = (
        None  # ent, ones, starts, ends
    )
    is_leaf: bool = True
    improvement: float = 0.0
    feature: int = TREE_UNDEFINED
    entry: int = -1
    n_left: int = 0
    left_counts: np.ndarray | None = None
    impurity_left: float = 0.0
    impurity_right: float = 0.0
    extra: dict = field(default_factory=dict)


def _gini(counts: np.ndarray, n: float) -> float:
    """Gini's ``1 - sum(count_k^2) / n^2`` in the Criterion's operation order."""
    sq = 0.0
    for c in counts.tolist():
        sq += float(c) * float(c)
    return 1.0 - sq / (n * n)


def _sift_up(heap: list, hole: int, rec: _Node) -> None:
    """libstdc++ ``__push_heap``: move ``rec`` up from ``hole`` (max-heap on improvement)."""
    parent = (hole - 1) // 2
    while hole > 0 and heap[parent].improvement < rec.improvement:
        heap[hole] = heap[parent]
        hole = parent
        parent = (hole - 1) // 2
    heap[hole] = rec


def _heap_push(heap: list, rec: _Node) -> None:
    """libstdc++ ``push_heap`` with ``comp(a, b) = a.improvement < b.improvement``."""
    heap.append(rec)
    _sift_up(heap, len(heap) - 1, rec)


def _heap_pop(heap: list) -> _Node:
    """libstdc++ ``pop_heap`` (``__adjust_heap`` then ``__push_heap``) + ``pop_back``."""
    n = len(heap)
    if n > 1:
        value = heap[n - 1]
        heap[n - 1] = heap[0]
        length = n - 1
        hole = 0
        child = 0
        while child < (length - 1) // 2:
            child = 2 * (child + 1)
            if heap[child].improvement < heap[child - 1].improvement:
                child -= 1
            heap[hole] = heap[child]
            hole = child
        if (length & 1) == 0 and child == (length - 2) // 2:
            child = 2 * (child + 1)
            heap[hole] = heap[child - 1]
            hole = child - 1
        _sift_up(heap, hole, value)
    return heap.pop()


class _Builder:
    def __init__(
        self,
        presort: Presort,
        rows: np.ndarray | None,
        y: np.ndarray,
        n_classes: int,
        *,
        max_leaf_nodes: int,
        min_samples_split: int,
        min_samples_leaf: int,
        max_depth: int,
        min_impurity_decrease: float,
        rand_r_state: int,
    ) -> None:
        self.presort = presort
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.y = np.asarray(y, dtype=np.int64)
        self.n = len(self.y)
        self.k = n_classes
        self.d = presort.n_features
        self.max_leaf_nodes = max_leaf_nodes
        self.mss = min_samples_split
        self.msl = min_samples_leaf
        self.max_depth = max_depth
        self.min_impurity_decrease = min_impurity_decrease
        self.shuffle = FeatureShuffle(self.d, rand_r_state)
        self.ybits = max(1, int(n_classes - 1).bit_length())
        self.sbits = max(1, int(self.n).bit_length())
        if not layout_fits(presort, self.n, n_classes):
            raise LayoutTooWide(
                f"{self.n} rows with up to 2^{presort.gbits} distinct values per feature and "
                f"{n_classes} classes do not fit a {LAYOUT_BITS}-bit entry"
            )
        self.smask = (1 << self.sbits) - 1
        self.binary = n_classes == 2
        self.nodes: list[dict] = []
        self.values: list[np.ndarray] = []

    # -- one node's best split -------------------------------------------------------

    def _search(self, rec: _Node) -> None:
        """BestSplitter.node_split_best on ``rec``; fills the split fields (or leaves it a leaf)."""
        ent, ones, starts, ends = rec.arrays
        m = len(rec.samples)
        bits = (self.ybits, self.presort.gbits, self.sbits)
        if self.binary:
            found = scan_binary(ent, ones, starts, ends, m, rec.counts, self.msl, *bits)
        else:
            found = scan_classes(ent, starts, ends, m, rec.counts, self.msl, *bits)
        constant, best, entry, n_left, left, imp_l, imp_r = found
        index = self.shuffle.searched(constant)
        top = best.max()
        if top == -np.inf:
            return
        feats = np.flatnonzero(best == top)  # the smallest n_L within each feature
        f = int(feats[0])
        if len(feats) > 1:  # exact ties between features: the first visited wins
            f = int(feats[np.argmin(self.shuffle.visit_rank(index)[feats])])
        rec.feature = f
        rec.entry = int(entry[f])
        rec.n_left = int(n_left[f])
        rec.left_counts = left[f].copy()
        rec.impurity_left = float(imp_l[f])
        rec.impurity_right = float(imp_r[f])
        wn, wn_l, wn_r = float(m), float(rec.n_left), float(m - rec.n_left)
        rec.improvement = (wn / self.n) * (
            rec.impurity - (wn_r / wn * rec.impurity_right) - (wn_l / wn * rec.impurity_left)
        )
        rec.is_leaf = rec.improvement + EPSILON < self.min_impurity_decrease

    # -- nodes -----------------------------------------------------------------------

    def _add_node(self, rec: _Node, parent: int, is_left: bool) -> None:
        """BestFirstTreeBuilder._add_split_node: leaf test, split search, tree node."""
        m = len(rec.samples)
        leaf = (
            rec.depth >= self.max_depth
            or m < self.mss
            or m < 2 * self.msl
            or rec.impurity <= EPSILON
        )
        rec.is_leaf = True
        if not leaf:
            self._search(rec)
        rec.node_id = len(self.nodes)
        if parent != TREE_UNDEFINED:
            self.nodes[parent]["left_child" if is_left else "right_child"] = rec.node_id
        node = {
            "left_child": TREE_LEAF,
            "right_child": TREE_LEAF,
            "feature": TREE_UNDEFINED,
            "threshold": float(TREE_UNDEFINED),
            "impurity": rec.impurity,
            "n_node_samples": m,
            "weighted_n_node_samples": float(m),
            "missing_go_to_left": 0,
        }
        if not rec.is_leaf:
            node["feature"] = rec.feature
            node["threshold"] = self._threshold(rec)
            node["missing_go_to_left"] = int(rec.n_left > m - rec.n_left)
        else:
            rec.improvement = 0.0
            rec.arrays = None
        self.nodes.append(node)
        self.values.append(rec.counts / float(m))

    def _threshold(self, rec: _Node) -> float:
        ent, _, starts, _ = rec.arrays
        f, e = rec.feature, rec.entry
        rows = self.rows
        if e < 0:  # the column-minimum block goes left
            lo = float(self.presort.colmin[f])
            e = int(starts[f]) - 1
        else:
            s = int(ent[e]) & self.smask
            lo = self.presort.value(f, int(rows[s]) if rows is not None else s)
        s = int(ent[e + 1]) & self.smask
        hi = self.presort.value(f, int(rows[s]) if rows is not None else s)
        return lo / 2.0 + hi / 2.0

    def _children(self, rec: _Node) -> tuple[_Node, _Node]:
        """Partition ``rec`` at its split, in place; children keep each feature's sorted order."""
        ent, ones, starts, ends = rec.arrays
        f, e = rec.feature, rec.entry
        goes_left = np.zeros(self.n, dtype=np.uint8)
        goes_left[rec.samples] = 1
        goes_left[ent[starts[f] : ends[f]] & self.smask] = 0
        if e >= 0:
            goes_left[ent[starts[f] : e + 1] & self.smask] = 1
        mask = goes_left[rec.samples].view(bool)
        left_samples = rec.samples[mask]
        right_samples = rec.samples[~mask]
        left_counts = rec.left_counts
        children = []
        for samples, counts, imp in (
            (left_samples, left_counts, rec.impurity_left),
            (right_samples, rec.counts - left_counts, rec.impurity_right),
        ):
            child = _Node(
                node_id=-1, depth=rec.depth + 1, impurity=imp, samples=samples, counts=counts
            )
            m = len(samples)
            searchable = not (
                child.depth >= self.max_depth or m < self.mss or m < 2 * self.msl or imp <= EPSILON
            )
            children.append((child, searchable))
        if children[0][1] or children[1][1]:
            m = len(rec.samples)
            n_left = partition_node(ent, ones, starts, ends, goes_left, m, self.sbits, self.binary)
            middle = starts + n_left
            regions = ((starts, middle), (middle, ends))
            for (lo, hi), (child, searchable) in zip(regions, children, strict=True):
                if searchable:
                    child.arrays = (ent, ones, lo, hi)
        out = [child for child, _ in children]
        rec.arrays = None
        return out[0], out[1]

    def build(self) -> TreeArrays:
        presort = self.presort
        local = np.arange(presort.n_rows, dtype=np.int32)  # presort row -> this tree's row
        if self.rows is not None:
            local[:] = -1
            local[self.rows] = np.arange(self.n, dtype=np.int32)
        ent, ones, starts, ends = root_entries(
            presort.sid,
            presort.glg,
            presort.hdr,
            local,
            self.y,
            self.ybits,
            self.sbits,
            self.binary,
        )
        counts = np.bincount(self.y, minlength=self.k).astype(np.int64)
        root = _Node(
            node_id=-1,
            depth=0,
            impurity=_gini(counts, float(self.n)),
            samples=np.arange(self.n, dtype=np.int64),
            counts=counts,
            arrays=(ent, ones, starts, ends),
        )
        max_split_nodes = self.max_leaf_nodes - 1
        self._add_node(root, TREE_UNDEFINED, True)
        frontier: list[_Node] = []
        _heap_push(frontier, root)
        max_depth_seen = -1
        while frontier:
            rec = _heap_pop(frontier)
            if rec.is_leaf or max_split_nodes <= 0:
                node = self.nodes[rec.node_id]
                node["left_child"] = node["right_child"] = TREE_LEAF
                node["feature"] = TREE_UNDEFINED
                node["threshold"] = float(TREE_UNDEFINED)
                rec.arrays = None
            else:
                max_split_nodes -= 1
                left, right = self._children(rec)
                self._add_node(left, rec.node_id, True)
                self._add_node(right, rec.node_id, False)
                _heap_push(frontier, left)
                _heap_push(frontier, right)
            max_depth_seen = max(max_depth_seen, rec.depth)
        cols = {name: np.array([nd[name] for nd in self.nodes]) for name in self.nodes[0]}
        return TreeArrays(
            left_child=cols["left_child"].astype(np.int64),
            right_child=cols["right_child"].astype(np.int64),
            feature=cols["feature"].astype(np.int64),
            threshold=cols["threshold"].astype(np.float64),
            impurity=cols["impurity"].astype(np.float64),
            n_node_samples=cols["n_node_samples"].astype(np.int64),
            weighted_n_node_samples=cols["weighted_n_node_samples"].astype(np.float64),
            missing_go_to_left=cols["missing_go_to_left"].astype(np.uint8),
            value=np.stack(self.values)[:, None, :],
            max_depth=max_depth_seen,
        )


def build_tree(
    presort: Presort,
    y: np.ndarray,
    n_classes: int,
    *,
    rows: np.ndarray | None = None,
    max_leaf_nodes: int,
    min_samples_split: int = 2,
    min_samples_leaf: int = 1,
    max_depth: int = np.iinfo(np.int32).max,
    min_impurity_decrease: float = 0.0,
    rand_r_state: int,
) -> TreeArrays:
    """scikit-learn's best-first Gini tree on ``presort.X[rows]`` with labels ``y`` (0..k-1).

    ``rand_r_state`` is the splitter's seed, ``random_state.randint(0, RAND_R_MAX)``;
    ``min_samples_split`` is already ``max(min_samples_split, 2 * min_samples_leaf)``.
    """
    return _Builder(
        presort,
        rows,
        y,
        n_classes,
        max_leaf_nodes=max_leaf_nodes,
        min_samples_split=min_samples_split,
        min_samples_leaf=min_samples_leaf,
        max_depth=max_depth,
        min_impurity_decrease=min_impurity_decrease,
        rand_r_state=rand_r_state,
    ).build()
