"""Exact fast estimators behind the builtin sklearn classifiers (no entry point of its own).

Each estimator reproduces a plain scikit-learn one (``reference()``) and
implements the fold fast path (:class:`bench.fold_fastpath.FoldFastPath`):

* :class:`KernelSVC` (:mod:`.svm`) and :class:`EuclideanKNN` (:mod:`.knn`):
  one Gram matrix per run, in blocks (:mod:`.gram`, :mod:`.products`); 1-NN
  without an SVM streams its neighbours over the blocks (:mod:`.nearest`);
* :class:`SmallSideLDA` (:mod:`.lda`, :mod:`.lda_solvers`, :mod:`.lda_folds`):
  the n x n or the d x d side, whichever is smaller, with per-fold downdating
  (d side) or every fold solved at once on one shared preconditioner (n side);
* :class:`ExactTree` (:mod:`.tree`): scikit-learn's best-first Gini tree from
  one presort of every feature (:mod:`.presort`, :mod:`.tree_builder`,
  :mod:`.tree_shuffle`), its split scan and partition compiled with numba
  (:mod:`.tree_kernels`).

Two opt-in approximations are not exact (:mod:`.approx_svm`, labelled "≈"):
:class:`LiblinearSVC` (the linear SVM solved by liblinear) and
:class:`NystroemSVC` (a Nyström feature map + that linear SVM).
"""

from plugins.fast_estimators.approx_svm import LiblinearSVC, NystroemSVC
from plugins.fast_estimators.knn import EuclideanKNN
from plugins.fast_estimators.lda import SmallSideLDA
from plugins.fast_estimators.svm import KernelSVC
from plugins.fast_estimators.tree import ExactTree

__all__ = [
    "EuclideanKNN",
    "ExactTree",
    "KernelSVC",
    "LiblinearSVC",
    "NystroemSVC",
    "SmallSideLDA",
]
