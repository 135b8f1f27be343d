"""The numba backend's compiled epoch for K stacked members (accelnn.stacked): one call trains
every member through all the steps of an epoch, so no Python runs between steps.

Members are independent within an epoch (each has its own rows, weights and scalars), so
the kernel takes them one after the other, and each through its steps: the member's
parameters and optimizer state stay in cache for the whole epoch. With more than one numba
thread (numba.set_num_threads, NUMBA_NUM_THREADS) the members are spread over the threads,
BLAS held to one thread meanwhile (threadpoolctl); each member's arithmetic is the same on any
thread, so the results do not depend on the thread count. Measured on the 2-core machine
(tabular net, K = 32, float32, otherwise idle): 16.7 us per model-step on one thread, 10.0
on two. A step is the numba
backend's single-model step on the member's slice of the stack: GEMMs through BLAS from
compiled code (np.dot; measured on the tabular net [20, 64, 64, 2], batch 32, the compiled
loops of numba_kernels.train_step took 3 to 6 times longer), and the backend's own kernels
for bias and activation, activation gradient, bias gradient, loss and output delta, and the
update rules (numba_kernels.UPDATES). A weighted member's head runs that kernel on each row
as a batch of one, scaled by the row's normalised weight: the weighted mean of
accelnn.losses, delta and loss alike.
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np
from numba import njit, prange

from accelnn.backends import numba_kernels as nk
from accelnn.backends.numba_kernels import kernel

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def epoch_function(network, head, rule):
    """run(X, Y, stack, plan) -> losses (K, S) for networks whose activations, head, dtype and
    update rule have kernels here; None for the others (they take the generic path)."""
    codes = [nk.ACT_CODES.get(a.name) for a in network.activations]
    if (np.dtype(network.dtype) not in FLOATS or None in codes
            or head.name not in nk.HEAD_CODES or rule.name not in nk.RULE_CODES):
        return None
    dtype = np.dtype(network.dtype)
    acts = np.array([*codes, nk.ACT_CODES["identity"]], dtype=np.int64)  # the output: bias only
    sizes = np.array(network.layer_sizes, dtype=np.int64)
    head_code, rule_code = nk.HEAD_CODES[head.name], nk.RULE_CODES[rule.name]
    dummy = np.zeros((1, 1, 1))

    def run(X, Y, stack, plan):
        K, S, _ = plan.idx.shape
        states = [stack.states[name] for name in stack.state_names]
        states += [stack.P] * (2 - len(states))  # placeholders the rule does not touch
        losses = np.zeros((K, S))
        live = int((plan.counts.sum(axis=1) > 0).sum())
        kernel, limits = epoch, contextlib.nullcontext()
        if numba.get_num_threads() > 1 and live > 1:
            blas = _one_blas_thread()
            if blas is not None:
                kernel, limits = epoch_parallel, blas
        with limits:
            kernel(X, Y, plan.idx, plan.counts, dummy if plan.weights is None else plan.weights,
                   plan.weight_sums, plan.weighted, sizes, acts, head_code, stack.offsets,
                   stack.l2, rule_code, stack.P, stack.G, states[0], states[1],
                   np.ascontiguousarray(plan.scalars, dtype=dtype), losses)
        return losses

    return run


def _one_blas_thread():
    """A context limiting BLAS to one thread (threadpoolctl), or None without threadpoolctl:
    threads over the members must not each start BLAS threads of their own."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(1, user_api="blas")


@kernel
def _head(Z, Y, head, weighted, w, w_sum, cast):
    """The output delta into Z and the batch's loss: unweighted, the mean over its rows;
    weighted, sum_i v_i l_i with v_i = w_i * (1 / w_sum), each row a batch of one."""
    m = Z.shape[0]
    if not weighted:
        cast[0] = 1.0 / m
        return nk.loss_delta(Z, Y, Z, head, cast[0])
    cast[1] = 1.0 / w_sum
    loss = 0.0
    for i in range(m):
        cast[0] = w[i]
        v = cast[0] * cast[1]
        loss += v * nk.loss_delta(Z[i:i + 1], Y[i:i + 1], Z[i:i + 1], head, v)
    return loss


@kernel
def epoch(X, Y, idx, counts, weights, w_sums, weighted, sizes, acts, head, offsets, l2, code,
          P, G, S1, S2, scalars, losses):
    """Every member k through the steps s with counts[k, s] > 0: its rows idx[k, s] of X and
    Y, forward, head, backward, L2 (l2[k] / m, m the rows or their weights' sum) and the
    update rule `code` with scalars[k, s]; losses[k, s] gets the step's loss before the
    update. P, G, S1, S2 are (K, n_params), laid out as accelnn.stacked.Stack lays them."""
    for k in range(idx.shape[0]):
        _member(X, Y, idx[k], counts[k], weights[k] if weighted[k] else weights[0],
                w_sums[k], weighted[k], sizes, acts, head, offsets, l2[k], code, P[k], G[k],
                S1[k], S2[k], scalars[k], losses[k])


@njit(parallel=True, cache=True, error_model="numpy")
def epoch_parallel(X, Y, idx, counts, weights, w_sums, weighted, sizes, acts, head, offsets,
                   l2, code, P, G, S1, S2, scalars, losses):
    """`epoch` with the members spread over numba's threads (numba.set_num_threads): each
    member's computation is the same, in the same order, whichever thread runs it."""
    for k in prange(idx.shape[0]):
        _member(X, Y, idx[k], counts[k], weights[k] if weighted[k] else weights[0],
                w_sums[k], weighted[k], sizes, acts, head, offsets, l2[k], code, P[k], G[k],
                S1[k], S2[k], scalars[k], losses[k])


@kernel
def _member(X, Y, idx, counts, weights, w_sums, weighted, sizes, acts, head, offsets, l2,
            code, p, g, s1, s2, scalars, losses):
    """One member's steps of `epoch` (its rows of every argument)."""
    S, B = idx.shape
    L = sizes.size - 1
    dt = p.dtype
    n_out = sizes[1:]
    Xb, Yb = np.empty((B, sizes[0]), dt), np.empty((B, sizes[L]), dt)
    A = np.empty(B * n_out.sum(), dt)
    D = np.empty(B * max(1, n_out[:L - 1].sum()), dt)
    T = np.empty((sizes[:L] * sizes[1:]).max(), dt)  # a transposed W
    cast = np.empty(2, dt)  # float64 -> the dtype, rounded as NumPy's astype rounds
    for s in range(S):
        nb = counts[s]
        if nb == 0:
            continue
        xb, yb = Xb[:nb], Yb[:nb]
        for i in range(nb):
            xb[i] = X[idx[s, i]]
            yb[i] = Y[idx[s, i]]
        # forward: A[l] (nb, n[l+1]) at offset B * sum of the widths before it
        prev, at = xb, 0
        for l in range(L):
            a, b, o = sizes[l], sizes[l + 1], offsets[2 * l]
            Z = A[at:at + nb * b].reshape(nb, b)
            np.dot(prev, p[o:o + a * b].reshape(a, b), Z)
            nk.bias_act(Z, p[o + a * b:o + a * b + b], acts[l])
            prev, at = Z, at + B * b
        loss = _head(prev, yb, head, weighted, weights[s], w_sums[s], cast)
        # backward, from the output layer down; each layer's update follows its gradients
        # (while they are in cache) once its W has served the layer below
        m = w_sums[s] if weighted else float(nb)
        l2_m = p.dtype.type(l2 / m)
        squares = 0.0
        delta = prev
        dat = B * n_out[:L - 1].sum()
        for l in range(L - 1, -1, -1):
            a, b, o = sizes[l], sizes[l + 1], offsets[2 * l]
            at -= B * b
            A_prev = xb if l == 0 else A[at - B * a:at - B * a + nb * a].reshape(nb, a)
            W = p[o:o + a * b].reshape(a, b)
            np.dot(A_prev.T, delta, g[o:o + a * b].reshape(a, b))
            nk.bias_grad(delta, g[o + a * b:o + a * b + b])
            if l > 0:
                dat -= B * a
                dA = D[dat:dat + nb * a].reshape(nb, a)
                WT = T[:a * b].reshape(b, a)
                _transpose(W, WT)  # dA = delta @ W.T as a plain GEMM: BLAS's faster case
                np.dot(delta, WT, dA)
                nk.act_grad(dA, A_prev, acts[l - 1])
                delta = dA
            w, e = o + a * b, o + a * b + b
            squares += nk.l2_and_update(p[o:w], p[w:e], g[o:w], g[w:e], s1[o:w], s1[w:e],
                                        s2[o:w], s2[w:e], code, scalars[s], True, l2_m)
        if l2 != 0.0:
            loss += l2 / (2.0 * m) * squares
        losses[s] = loss


@kernel
def _transpose(W, WT):
    """WT <- W.T, writing WT's rows in order."""
    for j in range(W.shape[1]):
        row = WT[j]
        for i in range(W.shape[0]):
            row[i] = W[i, j]
