"""The rows a fit trains or evaluates on (`Data`), with their sample weights, cut into
mini-batches (`Batch`) or chunks.

Sample weights in mini-batches, as Keras applies them: each step reduces the loss over its
own batch alone, here as the weighted mean sum_i w_i l_i / sum_i w_i over the batch's rows
(accelnn.network), which is Keras 3's reduction "mean_with_sample_weight" (its default,
"sum_over_batch_size", divides by the batch's row count instead: keras-team/keras#19740).
So a batch is normalised by its own weights, not by those of the whole data set; a batch
whose weights are all zero is skipped (no update). An epoch's loss is the mean of its batches'
losses, each counted by its share of the epoch's total weight (its share of the rows without
weights). For a full batch this is exactly the weighted mean over the data set, so integer
weights give the fit on repeated rows and zero weights the fit without those rows.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Batch(NamedTuple):
    """One step's rows: X (k, n0) and Y (k, nL) on the device; `share`, the batch's share of
    the epoch (of its rows, or of its weight); with sample weights, `w` (k, 1) on the device and
    `w_sum`, their sum on the host (None without weights)."""

    X: object
    Y: object
    share: float
    w: object = None
    w_sum: float | None = None


class Data:
    """Rows to train or evaluate on. Device-resident normally; for a memory-mapped X
    (np.memmap) trained in mini-batches, X stays on the host and each batch is read from the
    file and moved alone, so the process never holds the whole of X. `rows` selects a subset
    of a memory-mapped X (the training part of a validation split) without copying it.

    weights: the rows' sample weights as a float64 host array (n,), or None; they move to the
    device once, as a column `wd` (n, 1) in the model dtype. `total` is their sum (the number
    of rows without weights).

    part=(lo, m): this process holds rows lo, lo+1, ... of a data set of m rows split across
    processes (accelnn.distributed). `m` and the batches then number the rows of the whole
    data set, and each batch yields this process's rows of it (possibly none) with the whole
    batch's share; `weights` are then those of all m rows, as y holds all the targets, so that
    every process skips the same weightless batches; `chunks` covers this process's rows."""

    def __init__(self, model, X, Y, rows=None, part=None, weights=None):
        self.model, self.X, self.Y, self.rows = model, X, Y, rows
        self.stream = isinstance(X, np.memmap)
        self.n = len(rows) if rows is not None else X.shape[0]  # rows held here
        self.lo, self.m = part or (0, self.n)
        self.w, self.wd = weights, None
        self.total = float(self.m)
        if weights is not None:
            mine = weights[self.lo:self.lo + self.n]
            self.wd = model.backend.asarray(mine.reshape(-1, 1), model.dtype)
            self.total = float(weights.sum())

    def _take(self, idx):
        """The rows idx (indices into this data: on the host when streaming, else on the
        device) as device arrays, X and Y gathered into reused buffers, and their weights."""
        be, model = self.model.backend, self.model
        Xbuf, Ybuf = model.state.batch_buffers(model.network, idx.shape[0], self.X.shape[1],
                                               self.Y.shape[1])
        if self.stream:
            src = idx if self.rows is None else self.rows[idx]
            didx = be.asarray(idx)
            return (be.asarray(self.X[src], model.dtype), be.take_rows(self.Y, didx, Ybuf),
                    None if self.wd is None else self.wd[didx])
        return (be.take_rows(self.X, idx, Xbuf), be.take_rows(self.Y, idx, Ybuf),
                None if self.wd is None else self.wd[idx])

    def batches(self, bs: int, order):
        """A Batch per bs rows of the permutation `order` (None: in order). The permutation
        moves to the device once per epoch; the weights are summed on the host."""
        m, w = self.m, self.w
        if bs >= m and order is None and not self.stream:
            yield Batch(self.X, self.Y, 1.0, self.wd, None if w is None else self.total)
            return
        if order is None:
            order = np.arange(m)
        part = self.n != m
        host = order
        if not (self.stream or part):
            order = self.model.backend.asarray(order)
        for lo in range(0, m, bs):
            rows = host[lo:lo + bs]
            share = rows.shape[0] / m
            if w is not None:
                share = float(w[rows].sum()) / self.total
                if share == 0.0:
                    continue
            idx = order[lo:lo + bs]
            if part:  # this process's rows of the batch, picked on the host (no device sync)
                rows = rows[(rows >= self.lo) & (rows < self.lo + self.n)]
                idx = rows - self.lo
                if not self.stream:
                    idx = self.model.backend.asarray(idx)
            X, Y, wb = self._take(idx)
            yield Batch(X, Y, share, wb, None if w is None else float(w[rows].sum()))

    def chunks(self, size: int):
        """(X, Y, w) in order, at most `size` rows at a time (for evaluation); w is the rows'
        weights (a device column) or None."""
        for lo in range(0, self.n, size):
            hi = min(lo + size, self.n)
            if self.stream:
                yield self._take(np.arange(lo, hi))
            else:
                yield (self.X[lo:hi], self.Y[lo:hi],
                       None if self.wd is None else self.wd[lo:hi])
