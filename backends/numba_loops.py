"""The numba backend's whole training step for small dense networks, with the GEMMs written as
loops over the samples instead of BLAS calls: below a few thousand multiply-adds per sample,
these loops beat BLAS plus its per-call overhead (numba_backend.LOOP_STEP_MAX_MACS says by how
much); above, the BLAS step of numba_step wins. Same arguments and result as
numba_step.train_step, with the layer buffers in a (features, samples) layout.

Activations are kept as (features, samples) arrays, so that every inner loop runs over the
samples: contiguous, long, and vectorized, with one weight held in a register per pass.
"""

from __future__ import annotations

from numba import njit

from accelnn.backends.numba_kernels import (
    act_grad,
    activate,
    head_loss_delta,
    kernel,
    l2_and_update,
)


@njit(inline="always")
def _transpose(src, dst):
    """dst <- src.T, along the rows of whichever of the two has fewer (long inner loops)."""
    if dst.shape[0] <= src.shape[0]:
        for j in range(dst.shape[0]):
            d = dst[j]
            for i in range(d.size):
                d[i] = src[i, j]
    else:
        for i in range(src.shape[0]):
            s = src[i]
            for j in range(s.size):
                dst[j, i] = s[j]


@njit(inline="always")
def _dense_t(W, b, A, out):
    """out <- W.T @ A + b[:, None]: Z of a layer, (n_out, m), from A (n_in, m)."""
    for j in range(W.shape[1]):
        o, bj = out[j], b[j]
        for i in range(o.size):
            o[i] = bj
        for k in range(W.shape[0]):
            w, a = W[k, j], A[k]
            for i in range(o.size):
                o[i] += w * a[i]


@njit(inline="always")
def _back_t(D, W, out):
    """out <- W @ D: the upstream gradient, (n_in, m), from the layer's delta D (n_out, m)."""
    for k in range(W.shape[0]):
        o = out[k]
        w, d = W[k, 0], D[0]
        for i in range(o.size):
            o[i] = w * d[i]
        for j in range(1, W.shape[1]):
            w, d = W[k, j], D[j]
            for i in range(o.size):
                o[i] += w * d[i]


@kernel(fastmath={"reassoc"})
def _grads_t(A, D, dW, db):
    """dW <- A @ D.T and db <- row sums of D, with A (n_in, m) and D (n_out, m), summed over
    the samples in float64 (reassociated into vector lanes: an order fixed by m and the
    vector width)."""
    for j in range(D.shape[0]):
        d = D[j]
        s = 0.0
        for i in range(d.size):
            s += d[i]
        db[j] = s
        for k in range(A.shape[0]):
            a = A[k]
            s = 0.0
            for i in range(d.size):
                s += a[i] * d[i]
            dW[k, j] = s


@kernel
def train_step(Ws, bs, gWs, gbs, S1W, S1b, S2W, S2b, acts, head, X, Y, bufs, terms, rule, sc,
               update, l2):
    """One training step of a dense network: forward, loss and output delta, backward into
    gWs/gbs, the L2 terms, then the update through apply_update when `update`. Returns the loss
    before the update, in float64.

    bufs = (X.T (n0, m), Z[l].T then A[l].T (n_l, m) for every layer, the hidden deltas
    (n_l, m), the output (m, n_L) for the head), all of X's dtype; terms: float64 scratch of
    the output's size."""
    L = len(Ws)
    m = X.shape[0]
    dt = X.dtype.type
    XT, out = bufs[0], bufs[-1]
    _transpose(X, XT)
    A = XT
    for l in range(L):
        _dense_t(Ws[l], bs[l], A, bufs[1 + l])
        A = bufs[1 + l]
        if l < L - 1:
            activate(A, acts[l])
    _transpose(A, out)
    loss = head_loss_delta(out, Y, out, head, dt(1.0 / m), terms)
    _transpose(out, A)
    delta = A
    l2_m, sq = dt(l2 / m), 0.0
    for l in range(L - 1, -1, -1):
        A_prev = bufs[l]  # X.T for the first layer
        _grads_t(A_prev, delta, gWs[l], gbs[l])
        if l > 0:
            D = bufs[L + l]
            _back_t(delta, Ws[l], D)
            act_grad(D, A_prev, acts[l - 1])
            delta = D
        sq += l2_and_update(Ws[l], bs[l], gWs[l], gbs[l], S1W[l], S1b[l], S2W[l], S2b[l], rule,
                            sc, update, l2_m)
    return loss + l2 / (2 * m) * sq
