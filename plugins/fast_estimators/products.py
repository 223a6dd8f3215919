"""Matrix products in blocks: NumPy's BLAS on the CPU, or torch on the run's device (CUDA).

All products are float64 and blocked so that no temporary is larger than one
block. Block shapes are fixed (they do not depend on ``n_jobs``), blocks are
independent and written to disjoint parts of the output, so a result is the
same whatever the number of threads. :func:`products_for` picks the backend
from the run's ``device``: a CUDA device (``"cuda"``, ``"cuda:1"``) ->
:class:`TorchProducts` on it; anything else (``"cpu"``; MPS has no float64)
-> :class:`NumpyProducts`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from bench.fold_fastpath import CVContext

BLOCK = 1024  # rows per block of a Gram matrix or cross product


def blocks(n: int, size: int = BLOCK) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` spans of ``size`` covering ``range(n)``."""
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def run_blocks(n_jobs: int, work: Iterable[Callable[[], None]]) -> None:
    """Run the work items on ``n_jobs`` threads (in order when 1)."""
    items = list(work)
    if n_jobs <= 1 or len(items) <= 1:
        for item in items:
            item()
        return
    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        for _ in pool.map(lambda f: f(), items):
            pass


class NumpyProducts:
    """Blocked float64 products with NumPy (one BLAS thread per block, ``n_jobs`` blocks at once)."""

    def __init__(self, n_jobs: int = 1) -> None:
        self.n_jobs = max(1, int(n_jobs))

    def matmul_t(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a @ b.T`` for one block (the symmetric BLAS routine when ``a is b``)."""
        return a @ a.T if a is b else a @ b.T

    def gram(self, X: np.ndarray) -> np.ndarray:
        """``X @ X.T`` (n x n), upper blocks computed and mirrored: exactly symmetric."""
        n = X.shape[0]
        out = np.empty((n, n))
        spans = blocks(n)

        def pair(i: tuple[int, int], j: tuple[int, int]) -> Callable[[], None]:
            def work() -> None:
                a = X[i[0] : i[1]]
                if i == j:
                    out[i[0] : i[1], i[0] : i[1]] = self.matmul_t(a, a)
                    return
                block = self.matmul_t(a, X[j[0] : j[1]])
                out[i[0] : i[1], j[0] : j[1]] = block
                out[j[0] : j[1], i[0] : i[1]] = block.T

            return work

        run_blocks(self.n_jobs, (pair(i, j) for k, i in enumerate(spans) for j in spans[k:]))
        return out

    def cross(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """``A @ B.T`` in blocks of rows of ``A``."""
        out = np.empty((A.shape[0], B.shape[0]))

        def rows(i: tuple[int, int]) -> Callable[[], None]:
            def work() -> None:
                out[i[0] : i[1]] = self.matmul_t(A[i[0] : i[1]], B)

            return work

        run_blocks(self.n_jobs, (rows(i) for i in blocks(A.shape[0])))
        return out

    def cross_rows(self, X: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
        """``X[rows_a] @ X[rows_b].T`` without copying ``X[rows_b]`` (blocks of ``rows_a``)."""
        out = np.empty((len(rows_a), len(rows_b)))

        def rows(i: tuple[int, int]) -> Callable[[], None]:
            def work() -> None:
                out[i[0] : i[1]] = self.matmul_t(X[rows_a[i[0] : i[1]]], X)[:, rows_b]

            return work

        run_blocks(self.n_jobs, (rows(i) for i in blocks(len(rows_a))))
        return out

    def scatter(self, X: np.ndarray) -> np.ndarray:
        """``X.T @ X`` (d x d): the upper blocks of columns computed and mirrored.

        Exactly symmetric, and half the multiplications of the full product
        (diagonal blocks use the symmetric BLAS routine).
        """
        d = X.shape[1]
        out = np.empty((d, d))
        spans = blocks(d)
        columns = [np.ascontiguousarray(X[:, a:b]) for a, b in spans]

        def pair(i: int, j: int) -> Callable[[], None]:
            def work() -> None:
                (a0, a1), (b0, b1) = spans[i], spans[j]
                ci = columns[i]
                if i == j:
                    out[a0:a1, a0:a1] = ci.T @ ci
                    return
                block = ci.T @ columns[j]
                out[a0:a1, b0:b1] = block
                out[b0:b1, a0:a1] = block.T

            return work

        n = len(spans)
        run_blocks(self.n_jobs, (pair(i, j) for i in range(n) for j in range(i, n)))
        return out


class TorchProducts(NumpyProducts):
    """The same blocked products computed by torch on ``device`` (results back as NumPy).

    The features go to the device once per call; blocks come back one at a time.
    Diagonal blocks of a Gram matrix are mirrored from their upper triangle, so
    the result is exactly symmetric as on the CPU.
    """

    def __init__(self, device: Any) -> None:
        import torch

        super().__init__(1)  # one stream of work on the device
        self.torch = torch
        self.device = torch.device(device)

    def _on_device(self, a: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).to(self.device)

    def matmul_t(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ta = self._on_device(a)
        tb = ta if a is b else self._on_device(b)
        return (ta @ tb.T).cpu().numpy()

    def gram(self, X: np.ndarray) -> np.ndarray:
        xd = self._on_device(X)
        n = X.shape[0]
        out = np.empty((n, n))
        spans = blocks(n)
        for k, (i0, i1) in enumerate(spans):
            a = xd[i0:i1]
            for j0, j1 in spans[k:]:
                block = (a @ xd[j0:j1].T).cpu().numpy()
                if i0 == j0:
                    block = np.triu(block) + np.triu(block, 1).T
                out[i0:i1, j0:j1] = block
                out[j0:j1, i0:i1] = block.T
        return out

    def cross(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        bd = self._on_device(B)
        out = np.empty((A.shape[0], B.shape[0]))
        for i0, i1 in blocks(A.shape[0]):
            out[i0:i1] = (self._on_device(A[i0:i1]) @ bd.T).cpu().numpy()
        return out

    def cross_rows(self, X: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
        xd = self._on_device(X)
        cols = self.torch.from_numpy(np.asarray(rows_b, dtype=np.int64)).to(self.device)
        xb = xd.index_select(0, cols)
        out = np.empty((len(rows_a), len(rows_b)))
        for i0, i1 in blocks(len(rows_a)):
            sel = self.torch.from_numpy(np.asarray(rows_a[i0:i1], dtype=np.int64)).to(self.device)
            out[i0:i1] = (xd.index_select(0, sel) @ xb.T).cpu().numpy()
        return out

    def scatter(self, X: np.ndarray) -> np.ndarray:
        acc = self.torch.zeros(
            (X.shape[1], X.shape[1]), dtype=self.torch.float64, device=self.device
        )
        for i0, i1 in blocks(X.shape[0], 4 * BLOCK):
            t = self._on_device(X[i0:i1])
            acc += t.T @ t
        out = acc.cpu().numpy()
        return np.triu(out) + np.triu(out, 1).T


def products_for(context: CVContext) -> NumpyProducts:
    """The run's products backend (memoised): torch on a CUDA device, else NumPy's BLAS."""

    def make() -> NumpyProducts:
        if str(context.device).startswith("cuda"):
            return TorchProducts(context.device)
        return NumpyProducts(context.n_jobs)

    return context.shared("products", make)
