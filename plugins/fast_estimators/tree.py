"""``ExactTree``: scikit-learn's best-first Gini tree grown from one presort shared by all folds."""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.tree import DecisionTreeClassifier
from sklearn.tree._tree import NODE_DTYPE, Tree
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from bench.fold_fastpath import CVContext, FoldOutput, FoldView

if TYPE_CHECKING:
    from plugins.fast_estimators.presort import Presort

# The builder's modules are compiled with numba: imported on the first fast fit, so
# that loading the plugins (and every run without a tree) does not import numba.

FAST_MIN_ENTRIES = 1 << 20
"""Below this many feature values (rows x features) scikit-learn's own splitter grows the
tree: on so little data it is as fast as loading the compiled loops (~0.4 s, or a
one-time ~13 s compile), and its tree is the one the fast path reproduces anyway."""


def presort_bytes(n: int, d: int) -> int:
    """Upper estimate of a :class:`Presort` of ``n x d`` float32 (entries, keys while sorting)."""
    return n * d * 28 + 8 * d


def shared_presort(context: CVContext) -> Presort | None:
    """One presort of the run's features (None when they are not all finite)."""

    def make() -> Presort | None:
        from plugins.fast_estimators.presort import Presort

        try:
            presort = Presort(np.asarray(context.X, dtype=np.float32))
        except ValueError:  # non-finite features: scikit-learn's own handling
            return None
        context.budget.take(presort.sid.nbytes + presort.glg.nbytes)  # what stays
        return presort

    return context.shared("presort", make)


class ExactTree(DecisionTreeClassifier):
    """``DecisionTreeClassifier`` whose best-first Gini trees are grown by :mod:`.tree_builder`.

    With ``criterion="gini"``, ``splitter="best"``, ``max_features=None`` and
    ``max_leaf_nodes`` set (and no ``class_weight``, ``sample_weight``,
    ``monotonic_cst``, ``min_weight_fraction_leaf`` or ``ccp_alpha``), every
    feature is sorted once and each node's splits are scored with whole-array
    numpy operations: several times faster on 4,096-D features, and the tree -
    features, thresholds, impurities, values, node for node - is the one
    scikit-learn grows (:meth:`reference`). Anything else is fitted by
    scikit-learn itself on a column-major float32 copy. Under cross-validation
    (``fit_predict_fold``) one presort of all rows serves every fold.
    """

    def reference(self) -> DecisionTreeClassifier:
        return DecisionTreeClassifier(**self.get_params())

    def check_params(self) -> None:
        self._validate_params()

    def fast_path_supported(self) -> bool:
        """Whether :mod:`.tree_builder` reproduces this parameter combination."""
        return (
            self.criterion == "gini"
            and self.splitter == "best"
            and self.max_features is None
            and self.max_leaf_nodes is not None
            and self.class_weight is None
            and self.monotonic_cst is None
            and self.min_weight_fraction_leaf == 0.0
            and self.ccp_alpha == 0.0
        )

    def fit(self, X: Any, y: Any, sample_weight: Any = None, check_input: bool = True):
        if sample_weight is None and check_input and not hasattr(X, "tocsc"):
            self._validate_params()
            if self.fast_path_supported():
                X32, y_arr = validate_data(
                    self,
                    X,
                    y,
                    validate_separately=(
                        {"dtype": np.float32, "ensure_all_finite": False},
                        {"ensure_2d": False, "dtype": None},
                    ),
                )
                y_arr = np.atleast_1d(y_arr)
                big = X32.size >= FAST_MIN_ENTRIES
                if big and (y_arr.ndim == 1 or y_arr.shape[1] == 1) and np.isfinite(X32).all():
                    from plugins.fast_estimators.presort import Presort

                    if self._fit_fast(Presort(X32), None, y_arr.reshape(-1)):
                        return self
        if check_input and not hasattr(X, "tocsc") and not hasattr(X, "columns"):
            X = np.asfortranarray(X, dtype=np.float32)  # (a DataFrame keeps its column names)
        return super().fit(X, y, sample_weight=sample_weight, check_input=check_input)

    def _fit_fast(self, presort: Presort, rows: np.ndarray | None, y: np.ndarray) -> bool:
        """Fit on ``presort.X[rows]`` (all rows when None, each row at most once) with
        :func:`.tree_builder.build_tree`; False when the data is too large for it."""
        from plugins.fast_estimators.tree_builder import build_tree, layout_fits
        from plugins.fast_estimators.tree_shuffle import RAND_R_MAX

        check_classification_targets(y)
        classes, y_enc = np.unique(y, return_inverse=True)
        n, d = len(y), presort.n_features
        if not layout_fits(presort, n, len(classes)):
            return False  # before the seed is drawn: scikit-learn draws it then
        msl = self.min_samples_leaf
        if not isinstance(msl, numbers.Integral):
            msl = math.ceil(msl * n)
        mss = self.min_samples_split
        if not isinstance(mss, numbers.Integral):
            mss = max(2, math.ceil(mss * n))
        mss = max(mss, 2 * msl)
        random_state = check_random_state(self.random_state)
        arrays = build_tree(
            presort,
            y_enc,
            len(classes),
            rows=rows,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_split=mss,
            min_samples_leaf=msl,
            max_depth=np.iinfo(np.int32).max if self.max_depth is None else self.max_depth,
            min_impurity_decrease=self.min_impurity_decrease,
            rand_r_state=int(random_state.randint(0, RAND_R_MAX)),
        )
        nodes = np.empty(len(arrays.feature), dtype=NODE_DTYPE)
        for name in NODE_DTYPE.names:
            nodes[name] = getattr(arrays, name)
        tree = Tree(d, np.array([len(classes)], dtype=np.intp), 1)
        tree.__setstate__(
            {
                "max_depth": arrays.max_depth,
                "node_count": len(nodes),
                "nodes": nodes,
                "values": np.ascontiguousarray(arrays.value),
            }
        )
        self.n_features_in_ = d
        self.n_outputs_ = 1
        self.classes_ = classes
        self.n_classes_ = len(classes)
        self.max_features_ = d
        self.tree_ = tree
        return True

    # -- the fold fast path (bench.fold_fastpath.FoldFastPath) ---------------------------

    def fold_memory(self, context: CVContext, n_train: int, n_test: int) -> int:
        """The root node's packed entries and split-search temporaries (+ the presort, once)."""
        own = n_train * context.n_features * 20
        if context.has_shared("presort"):
            return own
        return own + presort_bytes(context.n_samples, context.n_features)

    def shared_keys(self, context: CVContext) -> tuple:
        """The run-wide work its folds wait on (:class:`bench.fold_fastpath.SharedWork`)."""
        return ("presort",)

    def fit_predict_fold(self, fold: FoldView, y_train: np.ndarray) -> FoldOutput | None:
        """Fit on the fold's rows of one presort shared by all folds; None -> generic path."""
        self._validate_params()
        ctx = fold.context
        if not self.fast_path_supported() or ctx.n_samples * ctx.n_features < FAST_MIN_ENTRIES:
            return None
        if len(fold.train) == 0 or len(np.unique(fold.train)) != len(fold.train):
            return None  # scikit-learn's error, or a repeated row's weight (entries hold rows once)
        presort = shared_presort(ctx)
        if presort is None or not self._fit_fast(presort, fold.train, np.asarray(y_train)):
            return None
        x_test = fold.x_test()
        return FoldOutput(
            pred=self.predict(x_test), classes=self.classes_, proba=self.predict_proba(x_test)
        )
