"""The numba backend's compiled training: a whole step, and a whole epoch of mini-batches, each
one call into compiled code; and the compiled forward pass of inference (`forward_rows`).
Imported only when that backend is used.

A step runs the network math of accelnn.network for dense networks of any depth: the GEMMs go
to BLAS from compiled code (`np.dot(a, b, out)`, with transposed views passed as they are, no
copies), and the elementwise work around them runs in the kernels of numba_kernels (bias and
activation, output head and delta, activation derivative, bias gradient, L2, and the
optimizer's update through its kernel in `numba_kernels.UPDATES`). Each layer's parameters are
updated as soon as its gradients and the delta it passes back are done, while they are in cache.
Every buffer is the caller's: a step allocates nothing.

Arguments shared by both kernels, per layer l = 0..L-1 as tuples: Ws, bs (parameters), gWs,
gbs (gradients), S1W, S1b, S2W, S2b (the rule's first and second state arrays, or any arrays
of the same types for a rule with fewer), As (one (rows, n[l+1]) buffer per layer; the last
holds Z[L], then dZ[L]), Ds (the deltas passed back into layer l's input, Ds[0] unused);
acts (activation codes, the last one identity), head (head code), terms and acc (float64
scratch for the loss terms and bias sums), rule (numba_kernels.RULE_CODES) and `update`
(False: leave the update to the caller), l2 (scikit-learn's alpha).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from accelnn.backends.numba_kernels import (
    IDENTITY,
    act_grad,
    add_bias_grad,
    all_finite,
    bias_act,
    head_loss_delta,
    kernel,
    l2_and_update,
)


@njit(inline="always")
def _forward(Ws, bs, acts, X, As, lo, hi, check):
    """Rows lo..hi-1 of the forward pass into As (bias and activation after each GEMM); X
    apart from the buffers, since it may be read-only (another array type to numba). With
    `check`, returns whether the first GEMM's output is all finite (else True)."""
    L = len(Ws)
    finite = True
    for l in range(L):
        Z = As[l][lo:hi]
        if l == 0:
            np.dot(X[lo:hi], Ws[0], Z)
            if check:
                finite = all_finite(Z)
        else:
            np.dot(As[l - 1][lo:hi], Ws[l], Z)
        bias_act(Z, bs[l], acts[l] if l < L - 1 else IDENTITY)
    return finite


@njit(inline="always")
def _backward(l, A_prev, delta, Ws, bs, gWs, gbs, S1W, S1b, S2W, S2b, acts, D, acc, rule, sc,
              update, l2_m):
    """Layer l's gradients from its input A_prev and delta, the delta passed back into D (for
    l > 0), its L2 gradient term and its update; returns sum ||W[l]||^2 (0 without L2)."""
    np.dot(A_prev.T, delta, gWs[l])
    add_bias_grad(delta, gbs[l], acc)
    if l > 0:
        np.dot(delta, Ws[l].T, D)
        act_grad(D, A_prev, acts[l - 1])
    return l2_and_update(Ws[l], bs[l], gWs[l], gbs[l], S1W[l], S1b[l], S2W[l], S2b[l], rule, sc,
                         update, l2_m)


@njit(inline="always")
def _step(Ws, bs, gWs, gbs, S1W, S1b, S2W, S2b, acts, head, X, Y, As, Ds, terms, acc, rule, sc,
          update, l2, r):
    """One step on the first r rows of X and Y (arrays of the parameters' dtype, X possibly
    read-only); returns the loss before the update (L2 term included) in float64."""
    L = len(Ws)
    dt = As[0].dtype.type
    _forward(Ws, bs, acts, X, As, 0, r, False)
    out = As[L - 1][:r]
    loss = head_loss_delta(out, Y[:r], out, head, dt(1.0 / r), terms)
    l2_m = dt(l2 / r)
    sq = 0.0
    for l in range(L - 1, 0, -1):
        sq += _backward(l, As[l - 1][:r], As[l][:r] if l == L - 1 else Ds[l + 1][:r], Ws, bs,
                        gWs, gbs, S1W, S1b, S2W, S2b, acts, Ds[l][:r], acc, rule, sc, update,
                        l2_m)
    first = min(1, L - 1)  # a runtime index: Ds has no item 1 without hidden layers
    sq += _backward(0, X[:r], As[0][:r] if L == 1 else Ds[first][:r], Ws, bs, gWs, gbs, S1W,
                    S1b, S2W, S2b, acts, Ds[0][:r], acc, rule, sc, update, l2_m)
    return loss + l2 / (2 * r) * sq


@kernel
def train_step(Ws, bs, gWs, gbs, S1W, S1b, S2W, S2b, acts, head, X, Y, As, Ds, terms, acc, rule,
               sc, update, l2):
    """One training step on all of X and Y (see the module docstring), the update with the
    rule's scalars `sc` when `update`; returns the loss before the update."""
    return _step(Ws, bs, gWs, gbs, S1W, S1b, S2W, S2b, acts, head, X, Y, As, Ds, terms, acc,
                 rule, sc, update, l2, X.shape[0])


@kernel
def train_epoch(Ws, bs, gWs, gbs, S1W, S1b, S2W, S2b, acts, head, X, Y, rows, order, first,
                last, batch, Xb, Yb, As, Ds, terms, acc, rule, scs, l2, total):
    """Mini-batches first..last-1 of the permutation `order` of the m = order.size rows, each
    gathered into Xb, Yb (batch rows; the last batch may have fewer) and trained on with the
    scalars scs[k - first], the update always inside. X row i is X[rows[i]] when rows is not
    empty (a subset of a memory-mapped X, read as it is, converted to the parameters' dtype on
    the way). Returns total plus each batch's loss times its share of the rows, added up in
    the order of the batches, as the shared loop does."""
    m = order.size
    dt = Xb.dtype.type
    for k in range(first, last):
        lo = k * batch
        r = min(batch, m - lo)
        for i in range(r):
            j = order[lo + i]
            src = rows[j] if rows.size else j
            for c in range(Xb.shape[1]):
                Xb[i, c] = dt(X[src, c])
            for c in range(Yb.shape[1]):
                Yb[i, c] = Y[j, c]
        loss = _step(Ws, bs, gWs, gbs, S1W, S1b, S2W, S2b, acts, head, Xb, Yb, As, Ds, terms,
                     acc, rule, scs[k - first], True, l2, r)
        weight = r / m
        total = loss if weight == 1.0 else total + loss * weight
    return total


@kernel(nogil=True)
def forward_rows(Ws, bs, acts, X, As, lo, hi):
    """The forward pass of rows lo..hi-1 of X into the same rows of As (As[-1]: the logits),
    bias and activation fused after each GEMM; returns False when the first GEMM's output is
    not all finite, which a non-finite value in those rows of X makes it (the caller then
    checks X itself). Releases the GIL: row blocks may run in threads of their own."""
    return _forward(Ws, bs, acts, X, As, lo, hi, True)
