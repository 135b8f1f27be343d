"""The math of K networks of one architecture trained at once, their parameters stacked along
a leading model axis, written once against the backend's array module and primitives.

Layout: the K members' parameters live in one backend array `P` of shape (K, n_params), row k
holding member k's [W1, b1, ..., WL, bL] flattened in order; the gradients `G` and every
optimizer state array (Adam's m and v, a velocity, ...) have the same layout. So

    stacked(P)     [W1 (K, n0, n1), b1 (K, n1), ...]: views, for the batched math
    member(P, k)   [W1 (n0, n1), b1 (n1,), ...]: C-contiguous views of row k, which member k's
                   own MLP holds as its parameters (it predicts, saves and trains on its slice)

A step of every member on its own mini-batch (its rows of the shared data, `idx` (K, B)),
for layers l = 1..L (accelnn.network has the math of one network):

    gather     A[0] = X[idx] (K, B, n0)                      one gather for all members
    forward    Z[l] = A[l-1] @ W[l] + b[l]  (K, B, n[l])     one batched GEMM per layer
    head       dZ[L], loss: each member's rows through the backend's loss_delta (weighted or
               not, exactly as its single fit), padding rows zeroed
    backward   dW[l] = A[l-1]^T @ dZ[l], db[l] = sum_rows dZ[l], dZ[l-1] = dZ[l] @ W[l]^T * g'
    L2         dW[l] += l2_k / m_k W[l], loss += l2_k / (2 m_k) sum ||W||^2, per member
    update     Backend.update with the rule's scalars of this step, once for all the live
               members that share them (an elementwise rule: the same numbers as one update
               per member)

A backend may compile a whole epoch of this (FAST_EPOCHS: the numba backend's loops over the
members, BLAS GEMMs from compiled code, every elementwise kernel and update rule of its
single-model path); every path must equal the generic one and, member by member, the
single-model fit (float64, 1e-12: tests/test_many.py).
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

import numpy as np

from accelnn.optimizers import RULES, Rule

# Backends with a compiled epoch of stacked members: name -> module with
# epoch_function(network, head, rule), which returns None or run(X, Y, stack, plan) -> losses.
FAST_EPOCHS = {"numba": "accelnn.backends.numba_stacked"}


class EpochPlan(NamedTuple):
    """One epoch of K members on the host, S steps of at most B rows each.

    idx          (K, S, B) int64: the rows of the shared data each step of each member trains
                 on (its first counts[k, s] entries; the rest are 0)
    counts       (K, S) int64: rows of each step; 0 where the member takes no step (frozen,
                 out of batches, or a batch of weight zero)
    weights      (K, S, B) float64 row weights of the weighted members' steps, or None
    weight_sums  (K, S) float64: their sums (the host's sum, as the single fit takes it)
    weighted     (K,) bool: which members are weighted
    scalars      (K, S, n) float64: each step's update-rule scalars (Optimizer.step_scalars)
    """

    idx: np.ndarray
    counts: np.ndarray
    weights: np.ndarray | None
    weight_sums: np.ndarray
    weighted: np.ndarray
    scalars: np.ndarray


class Stack:
    """Parameters, gradients and optimizer state of K members of `network`'s architecture
    (its backend and dtype; its own l2 is not used: `l2` (K,) float64 holds each member's)
    with the output `head` (accelnn.losses), for the update rule `rule` with `state_names`
    per-parameter state arrays (the optimizers' `state_arrays`). Arrays start at zero;
    `member` views are handed out to the members' MLPs, which keep training state through
    them."""

    def __init__(self, network, head, n_models: int, l2, rule: Rule,
                 state_names: tuple[str, ...]):
        be, sizes = network.backend, network.layer_sizes
        self.network, self.head, self.rule = network, head, rule
        self.state_names = tuple(state_names)
        self.n_models = int(n_models)
        self.l2 = np.asarray(l2, dtype=np.float64).reshape(self.n_models)
        self.shapes = [s for n_in, n_out in zip(sizes, sizes[1:]) for s in ((n_in, n_out),
                                                                              (n_out,))]
        sizes_flat = [int(np.prod(s)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes_flat)]).astype(np.int64)
        self.n_params = int(self.offsets[-1])
        shape, dtype = (self.n_models, self.n_params), network.dtype
        self.P, self.G = be.zeros(shape, dtype), be.zeros(shape, dtype)
        self.states = {name: be.zeros(shape, dtype) for name in self.state_names}
        self._fast = _fast_epoch(network, head, rule)

    # ------------------------------------------------------------------ views
    def stacked(self, A) -> list:
        """[W1 (K, n0, n1), b1 (K, n1), ...] views of a (K, n_params) array."""
        K, o = self.n_models, self.offsets
        return [A[:, o[i]:o[i + 1]].reshape((K, *s)) for i, s in enumerate(self.shapes)]

    def member(self, A, k: int) -> list:
        """[W1 (n0, n1), b1 (n1,), ...] C-contiguous views of row k of a (K, n_params)
        array."""
        o = self.offsets
        return [A[k, o[i]:o[i + 1]].reshape(s) for i, s in enumerate(self.shapes)]

    # ------------------------------------------------------------------ training
    def epoch(self, X, Y, plan: EpochPlan) -> np.ndarray:
        """Train every member through the steps of `plan` on the shared device data X (n, n0)
        and targets Y (n, nL), in place on P and the states (G is scratch). Returns the loss of
        each step before its update, (K, S) float64 (L2 term included; 0 where no step)."""
        if self._fast is not None:
            return self._fast(X, Y, self, plan)
        return self._generic_epoch(X, Y, plan)

    def _generic_epoch(self, X, Y, plan: EpochPlan) -> np.ndarray:
        net, head = self.network, self.head
        be, xp, dtype = net.backend, net.backend.xp, net.dtype
        K, S, B = plan.idx.shape
        sizes, L = net.layer_sizes, net.n_layers
        A = [be.empty((K, B, n), dtype) for n in sizes[1:]]
        D = [be.empty((K, B, n), dtype) for n in sizes[1:-1]]
        Ws, bs = self.stacked(self.P)[0::2], self.stacked(self.P)[1::2]
        gWs, gbs = self.stacked(self.G)[0::2], self.stacked(self.G)[1::2]
        losses = xp.zeros((K, S), dtype=np.float64)  # on the device: no sync until the end
        for s in range(S):
            counts = plan.counts[:, s]
            live = np.flatnonzero(counts)
            if not live.size:
                continue
            idx = be.asarray(plan.idx[:, s, :])
            prev, Yb = xp.take(X, idx, axis=0), xp.take(Y, idx, axis=0)
            Xb = prev
            for l in range(L):
                be.matmul(prev, Ws[l], A[l])
                A[l] += bs[l][:, None, :]
                net.activation(l).forward(xp, A[l])
                prev = A[l]
            Z = A[-1]
            for k in range(K):
                n = int(counts[k])
                Z[k, n:] = 0.0  # padding rows, and members without a step: no gradient
                if n:
                    w = None
                    if plan.weighted[k]:
                        w = be.asarray(plan.weights[k, s, :n].reshape(-1, 1), dtype) * (
                            1.0 / plan.weight_sums[k, s])
                    losses[k, s] = be.loss_delta(Z[k, :n], Yb[k, :n], head, Z[k, :n], w)
            delta = Z
            for l in reversed(range(L)):
                A_prev = A[l - 1] if l else Xb
                be.matmul(xp.swapaxes(A_prev, 1, 2), delta, gWs[l])
                xp.sum(delta, axis=1, out=gbs[l])
                if l:
                    be.matmul(delta, xp.swapaxes(Ws[l], 1, 2), D[l - 1])
                    net.activation(l - 1).grad(xp, D[l - 1], A_prev)
                    delta = D[l - 1]
            m = np.where(plan.weighted, plan.weight_sums[:, s], counts).astype(np.float64)
            l2_loss = self._add_l2(Ws, gWs, m, live)
            if l2_loss is not None:
                losses[:, s] += l2_loss
            self._update(live, plan.scalars[live, s])
        return be.to_numpy(losses)

    def _update(self, live: np.ndarray, scalars: np.ndarray) -> None:
        """The update of the members `live`, whose rule scalars are the rows of `scalars`: one
        Backend.update over the rows of all members with the same scalars (elementwise, so
        the same numbers as one update per member), on views when they are consecutive rows,
        else on gathered copies written back."""
        be, states = self.network.backend, [self.states[n] for n in self.state_names]
        rows, group = np.unique(scalars, axis=0, return_inverse=True)
        for g, row in enumerate(rows):
            ks = live[group.ravel() == g]
            args = tuple(float(c) for c in row)
            if ks[-1] - ks[0] == len(ks) - 1:
                part = slice(int(ks[0]), int(ks[-1]) + 1)
                be.update(self.rule, [self.P[part]], [self.G[part]], [[a[part]] for a in states],
                          args)
                continue
            idx = be.asarray(ks)
            P, kept = self.P[idx], [a[idx] for a in states]
            be.update(self.rule, [P], [self.G[idx]], [[a] for a in kept], args)
            self.P[idx] = P
            for a, k in zip(states, kept):
                a[idx] = k

    def _add_l2(self, Ws, gWs, m: np.ndarray, live: np.ndarray):
        """dW += l2_k / m_k W for every layer and member (m_k: the rows of its batch, or the
        sum of their weights); returns each member's L2 loss term l2_k / (2 m_k) sum ||W||^2
        as a (K,) float64 device array, 0 for members without L2 or without a step; None
        when no live member has L2."""
        K = self.n_models
        l2 = np.where(np.isin(np.arange(K), live), self.l2, 0.0)
        if not l2.any():
            return None
        be, xp, dtype = self.network.backend, self.network.backend.xp, self.network.dtype
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(l2 > 0, l2 / m, 0.0)
        scale = be.asarray(c.reshape(K, 1, 1), dtype)
        squares = 0.0
        for W, gW in zip(Ws, gWs):
            gW += scale * W
            squares = squares + xp.sum(W * W, axis=(1, 2), dtype=np.float64)
        return be.asarray(c / 2) * squares


def _fast_epoch(network, head, rule: Rule):
    """The backend's compiled epoch for `rule` (one of RULES) on this network and head, or
    None."""
    module = FAST_EPOCHS.get(network.backend.name)
    if module is None or RULES.get(rule.name) is not rule:
        return None
    return importlib.import_module(module).epoch_function(network, head, rule)
